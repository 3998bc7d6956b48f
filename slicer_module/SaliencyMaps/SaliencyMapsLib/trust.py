"""Trust metrics in the scene: the metrics as a table node and in a map node's provenance.

Plain MRML (no qt, ctk or application): the metrics are the engine's
(``napari_xai.engine.metrics``), imported lazily; this module only moves
them between the scene and the engine, so it is tested on slicer-core.
"""

from __future__ import annotations

from typing import Any

import vtk

from . import nodes

#: Node attribute marking the table node that holds a map's metrics.
TABLE_ATTRIBUTE = "SaliencyMaps.trustTable"
#: Descriptions of the table node's columns that are not metrics.
_OTHER_COLUMNS = {
    "map": "The saliency map (its volume node's name).",
    "rank": "How far the map earns trust among the maps evaluated together: sanity check passed first, then the faithfulness gain over a random order, then the mass in the mask.",
    "warnings": "What to know before reading the map: a failed sanity check, a shortcut flag, or a map no more faithful than a random order.",
}


def store_metrics(map_node: Any, result: dict[str, Any]) -> None:
    """Add the metrics to the map node's provenance (saved with the scene and with the map)."""
    prov = nodes.get_provenance(map_node) or {}
    prov["metrics"] = result
    nodes.set_provenance(map_node, prov, map_node.GetAttribute(nodes.SIGN_ATTRIBUTE) or prov.get("sign", "signed"))


def table_rows(results: dict[str, dict[str, Any]], ranking: list[str]) -> list[list[str]]:
    """The table as text: a header row, then one row per map in ranking order (warnings in the last column)."""
    from napari_xai.engine.metrics import TABLE_KEYS, column_doc, format_cell, row_warnings, table_row

    header = ["map", "rank"] + [column_doc(k).title for k in TABLE_KEYS] + ["warnings"]
    rows = [header]
    for rank, name in enumerate(ranking, start=1):
        row = table_row(results[name].get("method"), results[name])
        rows.append([name, str(rank)] + [format_cell(row[k]) for k in TABLE_KEYS] + ["; ".join(row_warnings(row))])
    return rows


def table_html(results: dict[str, dict[str, Any]], ranking: list[str]) -> str:
    """The table as HTML for a label: one column per map (a dock panel is narrow), one row per metric; warnings below."""
    import html

    rows = table_rows(results, ranking)
    maps = rows[1:]
    out = ["<table border='1' cellspacing='0' cellpadding='2'>", "<tr><th></th>" + "".join(f"<th>{html.escape(r[0])}</th>" for r in maps) + "</tr>"]
    for c, title in enumerate(rows[0][1:-1], start=1):
        out.append(f"<tr><td>{html.escape(title)}</td>" + "".join(f"<td>{html.escape(r[c])}</td>" for r in maps) + "</tr>")
    out.append("</table>")
    for r in maps:
        if r[-1]:
            out.append(f"<p><b>{html.escape(r[0])}</b>: <span style='color:#b8860b'>{html.escape(r[-1])}</span></p>")
    out.append("<p><i>Hover over the table for every metric's definition and reference (in the table node: over a column heading).</i></p>")
    return "\n".join(out)


def definitions_text() -> str:
    """Every metric's definition and reference, for a tooltip: the table's columns in its order, then the other keys."""
    from napari_xai.engine.metrics import documented

    return "\n\n".join(doc.tooltip() for doc in documented())


def definitions_html() -> str:
    """Every metric's definition and reference as HTML (anchors ``#<key>``), for a help window or a text browser."""
    from napari_xai.engine.metrics import definitions_html as engine_definitions

    return engine_definitions()


def metrics_table_node(scene: Any, results: dict[str, dict[str, Any]], ranking: list[str], table_node: Any = None, name: str = "Saliency map trust metrics") -> Any:
    """Write the metrics into a ``vtkMRMLTableNode`` (created when not given): one row per map, one column per metric.

    Column descriptions hold each metric's definition and reference (Slicer
    shows them as the column headers' tooltips in the table view), from the
    engine's one list of trust columns; the map, rank and warnings columns
    say what they hold.
    """
    from napari_xai.engine.metrics import TABLE_KEYS, column_doc

    rows = table_rows(results, ranking)
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    table = table_node.GetTable()
    table.Initialize()
    for c, title in enumerate(rows[0]):
        column = vtk.vtkStringArray()
        column.SetName(title)
        for row in rows[1:]:
            column.InsertNextValue(row[c])
        table.AddColumn(column)
    keys = ["map", "rank", *TABLE_KEYS, "warnings"]
    for title, key in zip(rows[0], keys):
        table_node.SetColumnDescription(title, column_doc(key).tooltip() if key in TABLE_KEYS else _OTHER_COLUMNS[key])
    table_node.SetAttribute(TABLE_ATTRIBUTE, "1")
    table_node.Modified()
    return table_node
