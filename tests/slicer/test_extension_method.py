"""A method registered from outside the package (tests/engine/methods/test_extension_api.py) appears in the Slicer module and runs (issue 13 item 6).

The module's menu comes from the static catalogue (no torch at load time); methods registered in this
process by code that imported the engine are added to it when the module loads (``params.registered_elsewhere``).
"""

from __future__ import annotations

import numpy as np
import slicer.util

from SaliencyMapsLib import nodes
from tests.slicer.conftest import make_gui
from tests.slicer.test_widget import model_file, ready  # noqa: F401  (fixture)
from tests.engine.methods.test_extension_api import user_method  # noqa: F401  (fixture: registers it, then removes it)


def test_a_user_registered_method_is_in_the_menu_and_runs(monkeypatch, scene, model_file, user_method):  # noqa: F811
    gui = make_gui(monkeypatch, scene, (5, 10))  # loaded after the registration, as a reload would
    assert user_method.name in gui.module.SaliencyMethod.__members__
    ready(gui, model_file, user_method.name)
    rows = gui.widget._methodParametersLayout.rows()
    assert [w.objectName for _label, w in rows] == ["methodParameter_power"]
    gui.widget.onApplyButton()
    gui.wait()
    assert not gui.dialogs.kinds("error"), gui.dialogs.kinds("error")
    out = gui.pn.outputVolume
    assert nodes.get_provenance(out)["method"] == user_method.name
    values = slicer.util.arrayFromVolume(out)
    assert (values >= 0).all() and np.abs(values).sum() > 0
