"""The Slicer module's trust metrics: evaluate a map node, a ranked table node with definitions, metrics in provenance."""

from __future__ import annotations

import pytest
import slicer.util

from napari_xai.engine import Cancelled
from napari_xai.engine.metrics import METRIC_COLUMNS, TABLE_KEYS, column_doc
from SaliencyMapsLib import nodes, trust
from tests.conftest import make_net

from tests.slicer.test_saliency_maps import node_ids, oblique_volume


def test_evaluate_maps_writes_a_ranked_table_and_provenance(module, scene):
    volume = oblique_volume(scene, shape=(9, 11, 12))
    net = make_net(3, seed=3)
    logic = module.SaliencyMapsLogic()
    grad, _ = logic.process(volume, net, "vanilla_gradient", target=1, showResult=False)
    gbp, _ = logic.process(volume, net, "guided_backprop", target=1, showResult=False)
    events = []
    table, results, ranking = logic.evaluateMaps(volume, net, [grad, gbp], settings={"steps": 4, "sanity_steps": 1}, onProgress=events.append)
    assert events and set(ranking) == {grad.GetName(), gbp.GetName()}
    vtable = table.GetTable()
    assert vtable.GetNumberOfRows() == 2
    header = [vtable.GetColumn(c).GetName() for c in range(vtable.GetNumberOfColumns())]
    assert header[:2] == ["map", "rank"] and header[-1] == "warnings"
    assert [vtable.GetValue(r, 0).ToString() for r in range(2)] == ranking
    title = column_doc("deletion_auc").title
    assert "Petsiuk" in table.GetColumnDescription(title)
    assert len(header) == len(TABLE_KEYS) + 3
    # every column says what it holds; the metric columns are the engine's one list, with definition and reference
    assert header[2:-1] == [doc.title for doc in METRIC_COLUMNS]
    for doc in METRIC_COLUMNS:
        description = table.GetColumnDescription(doc.title)
        assert doc.definition in description and doc.reference in description, doc.key
    assert all(table.GetColumnDescription(name) for name in ("map", "rank", "warnings"))
    for node in (grad, gbp):
        metrics = nodes.get_provenance(node)["metrics"]
        assert metrics["deletion_auc"] == results[node.GetName()]["deletion_auc"]
        assert isinstance(metrics["sanity_passed"], bool)
    # the map values were read back from the node unchanged
    a = nodes.attribution_from_map_node(grad)
    assert a.method == "vanilla_gradient" and (a.values == slicer.util.arrayFromVolume(grad)).all()


def test_evaluate_maps_cancel_leaves_the_scene_unchanged(module, scene):
    volume = oblique_volume(scene)
    net = make_net(3)
    logic = module.SaliencyMapsLogic()
    out, _ = logic.process(volume, net, "vanilla_gradient", showResult=False)
    before = node_ids(scene)
    with pytest.raises(Cancelled):
        logic.evaluateMaps(volume, net, [out], settings={"steps": 4}, shouldCancel=lambda: True)
    assert node_ids(scene) == before and "metrics" not in nodes.get_provenance(out)


def test_table_html_lists_every_map_and_warns():
    results = {
        "map A": {"method": "vanilla_gradient", "deletion_auc": 0.25, "sanity_passed": False, "shortcut_flag": True, "sanity_similarity": {"spearman": 0.9}},
        "map B": {"method": "occlusion", "deletion_auc": 0.5, "sanity_passed": True, "shortcut_flag": False},
    }
    text = trust.table_html(results, ["map B", "map A"])
    assert text.index("map B") < text.index("map A") and "0.25" in text
    assert "fails the model-randomisation sanity check" in text and "shortcut" in text
    assert "Petsiuk" in trust.definitions_text()
    assert "Hover over the table" in text


def test_definitions_follow_the_table_columns_in_order():
    text, page = trust.definitions_text(), trust.definitions_html()
    positions = [text.index(f"{doc.title}: {doc.definition}") for doc in METRIC_COLUMNS]
    assert positions == sorted(positions)
    assert all(doc.reference in text and f"name='{doc.key}'" in page for doc in METRIC_COLUMNS)
