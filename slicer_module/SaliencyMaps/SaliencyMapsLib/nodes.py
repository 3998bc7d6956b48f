"""MRML node code of the SaliencyMaps module.

Everything here works on the scene the nodes belong to (``node.GetScene()``),
never on the application's global ``slicer.mrmlScene``, and needs no Qt and
no running application: it is tested against ``slicer-core`` (real MRML from
PyPI).

Geometry (docs/architecture.md in the repository). Slicer keeps a volume's grid as ``IJKToRAS`` (RAS
world, index order ``i, j, k``); the engine keeps SimpleITK's origin, spacing
and direction (LPS world, ``x, y, z`` per-axis order). With ``F = diag(-1, -1,
1)`` (LPS <-> RAS, its own inverse)::

    IJKToRAS = [[F @ D @ diag(spacing), F @ origin], [0, 1]]

Voxel arrays are ``(k, j, i) = (z, y, x)`` on both sides
(``slicer.util.arrayFromVolume`` and ``SimpleITK.GetArrayFromImage`` agree).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import vtk

import slicer
import slicer.util

#: Node attribute holding the map's provenance (JSON), written by :func:`set_provenance`.
PROVENANCE_ATTRIBUTE = "SaliencyMaps.provenance"
#: Node attribute holding the map's sign (``signed`` / ``non-negative``).
SIGN_ATTRIBUTE = "SaliencyMaps.sign"
#: Node attribute holding the one-line caption of the run that wrote the map.
CAPTION_ATTRIBUTE = "SaliencyMaps.caption"
#: Node attribute marking colour tables this module built in code.
COLORMAP_ATTRIBUTE = "SaliencyMaps.colormap"

#: Slicer's file-based colour tables preferred for each engine colour map, by node ID
#: (``vtkMRMLColorLogic`` names them ``vtkMRMLColorTableNodeFile<file name>``) and by node name.
PREFERRED_COLOR_TABLES = {
    "inferno": (("vtkMRMLColorTableNodeFileInferno.txt", "Inferno"),),
    "bwr": (("vtkMRMLColorTableNodeFileDivergingBlueRed.txt", "DivergingBlueRed"),),
}

#: Anchor colours (position, r, g, b) of the colour maps built in code when no
#: file-based table exists and matplotlib is not importable.
_ANCHORS = {
    "inferno": (
        (0.0, 0.001, 0.000, 0.014),
        (0.25, 0.341, 0.062, 0.429),
        (0.5, 0.735, 0.216, 0.330),
        (0.75, 0.978, 0.557, 0.035),
        (1.0, 0.988, 0.998, 0.645),
    ),
    "bwr": ((0.0, 0.0, 0.0, 1.0), (0.5, 1.0, 1.0, 1.0), (1.0, 1.0, 0.0, 0.0)),
}


# ----------------------------------------------------------------------------
# Volume node <-> engine image
# ----------------------------------------------------------------------------


def ijk_to_ras(volume_node: Any) -> np.ndarray:
    """The node's 4x4 IJKToRAS matrix as a numpy array."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def geometry_from_volume_node(volume_node: Any):
    """The engine :class:`~napari_xai.engine.Geometry` (SimpleITK order, LPS) of a volume node.

    Reads the node's IJKToRAS, flips RAS to LPS and hands the matrix, in
    ``(z, y, x)`` order, to the engine's
    :func:`~napari_xai.engine.geometry.geometry_from_data_to_world` (spacing:
    the length of each index axis, direction: its unit vector, as
    ``sitkUtils`` does).
    """
    from napari_xai.engine.geometry import LPS_TO_RAS, geometry_from_data_to_world

    ijk_to_lps = LPS_TO_RAS @ ijk_to_ras(volume_node)  # the flip is its own inverse
    zyx = np.eye(4)
    zyx[:3, :3] = ijk_to_lps[:3, :3][::-1, ::-1]
    zyx[:3, 3] = ijk_to_lps[:3, 3][::-1]
    try:
        return geometry_from_data_to_world(zyx)
    except ValueError:
        from napari_xai.engine import ImageError

        spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
        raise ImageError(
            f"The volume {volume_node.GetName()!r} has a degenerate IJKToRAS matrix (spacing {spacing.tolist()}).",
            "Fix the volume's spacing and directions in the Volumes module (Volume Information).",
        ) from None


def scan_from_volume_node(volume_node: Any):
    """A :class:`~napari_xai.engine.ScanImage` of a scalar (or vector) volume node, with its geometry.

    The voxels are copied as float32 ``(k, j, i) = (z, y, x)``; a vector volume
    ``(k, j, i, c)`` becomes channels-first ``(c, z, y, x)``.

    Raises
    ------
    ImageError
        No voxels, or NaN / infinite voxels (checked by the engine).
    """
    from napari_xai.engine import ImageError, ScanImage
    from napari_xai.engine.image import validate_scan

    if volume_node is None or volume_node.GetImageData() is None:
        name = volume_node.GetName() if volume_node is not None else "(none)"
        raise ImageError(f"The volume {name} has no voxels.", "Load a scan (File > Add Data) and select it as the input volume.")
    array = np.array(slicer.util.arrayFromVolume(volume_node), dtype=np.float32, copy=True)
    channel_axis = None
    if array.ndim == 4:
        array = np.moveaxis(array, -1, 0)
        channel_axis = 0
    scan = ScanImage(array, geometry_from_volume_node(volume_node), channel_axis, volume_node.GetName() or "volume")
    validate_scan(scan)
    return scan


def in_scene(node: Any) -> bool:
    """True when ``node`` is still in a scene (not removed, scene not closed)."""
    scene = node.GetScene() if node is not None else None
    return scene is not None and node.GetID() is not None and scene.GetNodeByID(node.GetID()) is node


def volume_state(volume_node: Any) -> tuple | None:
    """What the engine read from a volume node, comparable: its scene, voxels (image data and its
    modification time), IJKToRAS and parent transform. None when the node is not in a scene."""
    if not in_scene(volume_node):
        return None
    image = volume_node.GetImageData()
    # C++ addresses (``__this__``), not id(): VTK makes a new Python wrapper when the last one was collected.
    return (
        volume_node.GetScene().__this__,
        volume_node.GetID(),
        image.__this__ if image is not None else None,
        image.GetMTime() if image is not None else None,
        tuple(ijk_to_ras(volume_node).ravel().tolist()),
        volume_node.GetTransformNodeID(),
    )


# ----------------------------------------------------------------------------
# The output map volume
# ----------------------------------------------------------------------------


def create_map_volume(
    input_volume: Any, values: np.ndarray, name: str, output_volume: Any = None, scene: Any = None
) -> Any:
    """Put a map on the input volume's grid into a scalar volume node.

    ``CopyOrientation(input)`` (origin, spacing, IJK directions), then
    ``slicer.util.updateVolumeFromArray`` with a float32 ``(k, j, i)`` array;
    the node goes under the input's parent transform, so it stays aligned
    with the scan wherever the scan is moved.

    Parameters
    ----------
    input_volume : vtkMRMLScalarVolumeNode
        The explained scan.
    values : numpy.ndarray
        ``(k, j, i)`` on the input's grid (an :class:`Attribution`'s ``values``).
    name : str
        The map's name. A new node gets a unique form of it; a reused output
        node is renamed to it, so its name always says which run wrote it.
    output_volume : vtkMRMLScalarVolumeNode, optional
        Node to overwrite; None: a new node in the input's scene. Never the
        input itself (:func:`check_output_volume`).
    scene : vtkMRMLScene, optional
        Defaults to the input's scene.

    Returns
    -------
    vtkMRMLScalarVolumeNode
    """
    check_output_volume(input_volume, output_volume)
    values = np.asarray(values)
    dims = input_volume.GetImageData().GetDimensions() if input_volume.GetImageData() else None
    if dims is None or tuple(values.shape) != tuple(dims[::-1]):
        raise ValueError(f"The map has shape {values.shape} but the input volume's voxel grid is (k, j, i) = {tuple(dims[::-1]) if dims else None}.")
    scene = scene or input_volume.GetScene()
    if scene is None:
        from napari_xai.engine import ImageError

        raise ImageError("The input volume is no longer in a scene (the scene was closed).", "Load the scan again and press Apply.")
    if output_volume is None:
        output_volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
    elif output_volume.GetName() != name:
        output_volume.SetName(name)
    output_volume.CopyOrientation(input_volume)
    slicer.util.updateVolumeFromArray(output_volume, np.ascontiguousarray(values, dtype=np.float32))
    output_volume.SetAndObserveTransformNodeID(input_volume.GetTransformNodeID())
    return output_volume


def check_output_volume(input_volume: Any, output_volume: Any) -> None:
    """Refuse a map volume that would overwrite the scan it explains (as the engine refuses to save a map over its source).

    Raises
    ------
    ImageError
        ``output_volume`` is ``input_volume``.
    """
    if output_volume is not None and input_volume is not None and output_volume.GetID() == input_volume.GetID():
        from napari_xai.engine import ImageError

        raise ImageError(
            f"The map volume is the input volume {input_volume.GetName()!r}: Apply would overwrite the scan with the map.",
            "Choose another map volume, or 'None' to create a new one.",
        )


def describe_map(volume_node: Any, provenance: dict, sign: str, caption: str) -> None:
    """Store how the map was made, every time a run writes it: provenance (JSON), sign, caption and description."""
    set_provenance(volume_node, provenance, sign)
    volume_node.SetAttribute(CAPTION_ATTRIBUTE, caption)
    volume_node.SetDescription(caption)


def set_provenance(volume_node: Any, provenance: dict, sign: str) -> None:
    """Store how the map was made (JSON) and its sign as node attributes (saved with the scene)."""
    volume_node.SetAttribute(PROVENANCE_ATTRIBUTE, json.dumps(provenance))
    volume_node.SetAttribute(SIGN_ATTRIBUTE, sign)


def get_provenance(volume_node: Any) -> dict | None:
    """The provenance stored by :func:`set_provenance`, or None."""
    text = volume_node.GetAttribute(PROVENANCE_ATTRIBUTE)
    return json.loads(text) if text else None


def attribution_from_map_node(volume_node: Any):
    """The :class:`~napari_xai.engine.Attribution` a map volume shows: its voxels, its geometry, its stored provenance.

    Raises
    ------
    ImageError
        The volume is not a map made by this module (no provenance).
    """
    from napari_xai.engine import Attribution, ImageError

    provenance = get_provenance(volume_node) if volume_node is not None else None
    if not provenance:
        name = volume_node.GetName() if volume_node is not None else "(none)"
        raise ImageError(f"The volume {name} is not a saliency map made by this module.", "Compute a map with Apply first.")
    values = np.array(slicer.util.arrayFromVolume(volume_node), dtype=np.float32, copy=True)
    return Attribution.from_provenance(values, provenance, geometry_from_volume_node(volume_node), name=volume_node.GetName())


def write_report(input_volume: Any, map_volume: Any, path: str | os.PathLike):
    """The PDF report (and PNG pages) of a map over its input volume; returns the engine's ``ReportFiles``."""
    from napari_xai.engine.report import write_report as engine_write_report

    storage = input_volume.GetStorageNode() if input_volume is not None else None
    image_path = storage.GetFileName() if storage is not None else None
    return engine_write_report(scan_from_volume_node(input_volume), [attribution_from_map_node(map_volume)], path, image_path=image_path)


# ----------------------------------------------------------------------------
# Colour tables and display
# ----------------------------------------------------------------------------


def colormap_for_sign(sign: str) -> str:
    """The engine's colour map name for a sign (``inferno`` or ``bwr``)."""
    from napari_xai.engine.display import DIVERGING_COLORMAP, SEQUENTIAL_COLORMAP

    return SEQUENTIAL_COLORMAP if sign == "non-negative" else DIVERGING_COLORMAP


def color_node_for_sign(scene: Any, sign: str) -> Any:
    """A colour table fitting the map's sign: sequential for ``non-negative``, diverging for ``signed``.

    Slicer's file-based table (Inferno, DivergingBlueRed) when the scene has
    it; these are missing in some builds (and in ``slicer-core``), so
    otherwise a table built in code with the same colours as the engine's
    colour map (reused if already built in this scene).
    """
    colormap = colormap_for_sign(sign)
    for node_id, node_name in PREFERRED_COLOR_TABLES.get(colormap, ()):
        node = scene.GetNodeByID(node_id)
        if node is None:
            node = _first_node_by_name(scene, node_name, "vtkMRMLColorNode")
        if node is not None:
            return node
    return build_color_table(scene, colormap)


def build_color_table(scene: Any, colormap: str, n_colors: int = 256) -> Any:
    """Get or build the colour table ``SaliencyMaps <colormap>`` in ``scene``.

    Colours come from matplotlib's colour map of that name when matplotlib is
    importable (the engine depends on it), else from built-in anchors. The
    diverging map is transparent towards zero by the engine's rule
    (``napari_xai.engine.display.overlay_alpha``, as napari and the figures
    draw it), so that a signed map's neutral voxels do not cover the scan.
    """
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLColorTableNode")
        if node.GetAttribute(COLORMAP_ATTRIBUTE) == colormap:
            return node
    from napari_xai.engine.display import overlay_alpha  # the one transparency rule of napari, Slicer and the figures

    rgb = _colormap_rgb(colormap, n_colors)
    alpha = overlay_alpha(np.linspace(-1.0, 1.0, n_colors)) if colormap == "bwr" else np.ones(n_colors)
    node = slicer.vtkMRMLColorTableNode()
    node.SetTypeToUser()
    node.SetName(f"SaliencyMaps {colormap}")
    node.SetNumberOfColors(n_colors)
    for i in range(n_colors):
        node.SetColor(i, f"{i}", float(rgb[i, 0]), float(rgb[i, 1]), float(rgb[i, 2]), float(alpha[i]))
    node.SetAttribute(COLORMAP_ATTRIBUTE, colormap)
    node.SetAttribute("Category", "SaliencyMaps")
    scene.AddNode(node)
    return node


def _colormap_rgb(colormap: str, n_colors: int) -> np.ndarray:
    positions = np.linspace(0.0, 1.0, n_colors)
    try:
        import matplotlib

        return np.asarray(matplotlib.colormaps[colormap](positions))[:, :3]
    except Exception:  # no matplotlib, or an unknown name: interpolate the anchors
        anchors = np.asarray(_ANCHORS.get(colormap, _ANCHORS["inferno"]), dtype=float)
        return np.stack([np.interp(positions, anchors[:, 0], anchors[:, c]) for c in (1, 2, 3)], axis=1)


def apply_display(volume_node: Any, values: np.ndarray, sign: str, threshold_fraction: float = 0.0):
    """Colour table, window/level and threshold for a map, from the engine's display settings.

    - colour table: :func:`color_node_for_sign`;
    - window/level: the engine's contrast limits, ``(0, hi)`` for non-negative
      maps, symmetric ``(-hi, hi)`` for signed ones (``hi`` from
      ``napari_xai.engine.display.default_limit``); a signed map with no
      negative value is shown as non-negative (``display_sign``);
    - threshold (non-negative maps): voxels below ``threshold_fraction * hi``
      are transparent, so the scan shows through. Slicer's threshold keeps one
      interval, so signed maps are not thresholded (the diverging table built
      in code is transparent near zero instead).

    Returns
    -------
    napari_xai.engine.display.DisplaySettings
        The engine's settings (colour map, contrast limits, opacity).
    """
    from napari_xai.engine.display import display_settings, display_sign

    sign = display_sign(values, sign)
    settings = display_settings(values, sign)
    volume_node.CreateDefaultDisplayNodes()
    display = volume_node.GetDisplayNode()
    scene = volume_node.GetScene()
    color_node = color_node_for_sign(scene, sign)
    lo, hi = (float(v) for v in settings.contrast_limits)
    with slicer.util.NodeModify(display):
        display.SetAndObserveColorNodeID(color_node.GetID())
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(lo, hi)
        display.AutoThresholdOff()
    set_threshold_fraction(volume_node, threshold_fraction, sign, values)
    return settings


def set_threshold_fraction(volume_node: Any, threshold_fraction: float, sign: str | None = None, values: np.ndarray | None = None) -> bool:
    """Make voxels of a non-negative map below ``threshold_fraction`` of its display maximum transparent.

    Works on an existing map (the "Hide below" slider): the display maximum is
    the window's upper level set by :func:`apply_display`, the sign the one
    stored by :func:`set_provenance`. Signed maps are not thresholded
    (Slicer's threshold keeps one interval).

    Returns
    -------
    bool
        Whether a threshold is applied now.
    """
    display = volume_node.GetDisplayNode()
    if display is None:
        return False
    sign = sign or volume_node.GetAttribute(SIGN_ATTRIBUTE)
    hi = float(display.GetWindowLevelMax())
    apply = sign == "non-negative" and threshold_fraction > 0
    with slicer.util.NodeModify(display):
        if apply:
            if values is None:
                values = slicer.util.arrayFromVolume(volume_node)
            vmax = float(np.max(values)) if np.size(values) else hi
            display.SetThreshold(threshold_fraction * hi, max(vmax, hi))
            display.ApplyThresholdOn()
        else:
            display.ApplyThresholdOff()
    return apply


def show_as_foreground(scene: Any, background: Any, foreground: Any, opacity: float) -> int:
    """Show ``foreground`` over ``background`` with ``opacity`` in every slice view of ``scene``.

    The MRML half of ``slicer.util.setSliceViewerLayers``: it sets every
    ``vtkMRMLSliceCompositeNode`` (one per slice view; the application's
    layout manager makes them). Fitting the views to the volume needs the
    application (:func:`SaliencyMapsLib.views.fit_slice_views`).

    Returns
    -------
    int
        Number of slice views set.
    """
    count = scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")
    for i in range(count):
        composite = scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        with slicer.util.NodeModify(composite):
            if background is not None:
                composite.SetBackgroundVolumeID(background.GetID())
            composite.SetForegroundVolumeID(foreground.GetID())
            composite.SetForegroundOpacity(float(opacity))
    return count


# ----------------------------------------------------------------------------
# Segment -> region mask
# ----------------------------------------------------------------------------


def segment_ids(segmentation_node: Any) -> list[tuple[str, str]]:
    """``(segment ID, segment name)`` of every segment of a segmentation node."""
    segmentation = segmentation_node.GetSegmentation()
    out = []
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        out.append((sid, segmentation.GetSegment(sid).GetName()))
    return out


def segment_to_mask(segmentation_node: Any, segment_id: str, reference_volume: Any) -> np.ndarray:
    """A segment as a boolean mask ``(k, j, i)`` on the reference volume's voxel grid.

    Exported through a temporary labelmap node with the reference volume's
    geometry (Slicer resamples the segment, and applies the segmentation's
    and volume's transforms); the temporary nodes are removed, so the scene is
    left as it was.

    Raises
    ------
    TargetError
        No such segment, or the export failed.
    """
    from napari_xai.engine import TargetError

    segmentation = segmentation_node.GetSegmentation()
    if not segment_id or segmentation.GetSegment(segment_id) is None:
        # Accept a segment name too.
        by_name = segmentation.GetSegmentIdBySegmentName(segment_id) if segment_id else ""
        if not by_name:
            names = [name for _, name in segment_ids(segmentation_node)]
            raise TargetError(
                f"The segmentation {segmentation_node.GetName()!r} has no segment {segment_id!r}.",
                f"Pick one of its segments {names}, or clear the region to use the predicted mask.",
            )
        segment_id = by_name
    scene = reference_volume.GetScene() or segmentation_node.GetScene()
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    before = _node_ids(scene)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__SaliencyMaps_region__")
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap, reference_volume)
        if not ok:
            raise TargetError(
                f"The segment {segment_id!r} could not be exported onto the grid of {reference_volume.GetName()!r}.",
                "Check that the segment is not empty and overlaps the input volume.",
            )
        mask = np.array(slicer.util.arrayFromVolume(labelmap)) > 0
    finally:
        _remove_new_nodes(scene, before)
    dims = reference_volume.GetImageData().GetDimensions()
    if mask.shape != tuple(dims[::-1]):  # defensive: the export crops to the reference extent
        raise TargetError(
            f"The segment's mask has shape {mask.shape}, the input volume {tuple(dims[::-1])}.",
            "Make the segmentation's geometry from the input volume (Segment Editor: Specify geometry).",
        )
    return mask


# ----------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------

#: Extensions a map can be saved to from Slicer.
SAVE_EXTENSIONS = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def save_map(volume_node: Any, path: str | os.PathLike) -> Path:
    """Write a map volume (NRRD / NIfTI / MHA) with its geometry, and its provenance as ``<path>.json``.

    Uses Slicer's own volume writer (``vtkMRMLVolumeArchetypeStorageNode``),
    which converts RAS back to the file's LPS; no node is added to the scene.

    Returns
    -------
    Path
        The written image.
    """
    p = Path(path)
    if not str(p).lower().endswith(SAVE_EXTENSIONS):
        raise ValueError(f"Cannot save {p.name}: use one of {', '.join(SAVE_EXTENSIONS)}.")
    p.parent.mkdir(parents=True, exist_ok=True)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(p))
    storage.SetUseCompression(1)
    if not storage.WriteData(volume_node):
        raise OSError(f"Slicer could not write {p}.")
    provenance = get_provenance(volume_node)
    if provenance is not None:
        Path(str(p) + ".json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return p


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def _first_node_by_name(scene: Any, name: str, class_name: str) -> Any:
    nodes = scene.GetNodesByClassByName(class_name, name)
    return nodes.GetItemAsObject(0) if nodes.GetNumberOfItems() else None


def _node_ids(scene: Any) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def _remove_new_nodes(scene: Any, before: set[str]) -> None:
    """Remove every node added to ``scene`` since ``before`` (temporary nodes and their display/colour/storage nodes)."""
    for node_id in sorted(_node_ids(scene) - before):
        node = scene.GetNodeByID(node_id)
        if node is not None:
            scene.RemoveNode(node)
