"""The method menu: families in catalogue order."""

from __future__ import annotations

from napari_xai.session.methods import methods_by_family


def test_methods_grouped_by_family_in_catalogue_order():
    from napari_xai.engine import list_methods

    groups = methods_by_family()
    fams = [f for f, _ in groups]
    assert fams == sorted(fams, key=lambda f: ("perturbation", "backpropagation", "class activation", "activation maximisation").index(f))
    assert sum(len(s) for _, s in groups) == len(list_methods())
