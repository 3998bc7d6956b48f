"""Headless entry point: explain one or many scans and write aligned maps and overlay figures.

    napari-xai-explain --sample --out demo_output
    napari-xai-explain --model model.pt2 --image scans/*.nii.gz --method grad_cam --method occlusion --out maps/
    napari-xai-explain --sample --report --out demo_output          # a PDF report per scan
    napari-xai-explain --model model.pt2 --image dicom_series/ --method grad_cam --dicom --out maps/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from napari_xai.engine.dicom_export import write_parametric_map
from napari_xai.engine.errors import Cancelled, ImageError, XAIError
from napari_xai.engine.estimate import format_seconds
from napari_xai.engine.image_io import is_dicom_series_folder, read_image, scan_name
from napari_xai.engine.overlay import render_overlay
from napari_xai.engine.progress import Progress
from napari_xai.engine.registry import get_method, list_methods
from napari_xai.engine.report import write_report
from napari_xai.engine.safe_write import check_writable
from napari_xai.engine.trust import trust_metrics
from napari_xai.session.checks import completeness_note
from napari_xai.session.jobs import Job, method_params
from napari_xai.session.models import MODELS  # importing it registers the sample architectures

DEFAULT_SAMPLE_METHODS = ("vanilla_gradient", "integrated_gradients", "grad_cam", "occlusion")
#: Settings for the --sample demo that keep each method to seconds on a CPU
#: (every method's defaults finish within 30 s on the sample; see benchmarks/README.md).
SAMPLE_PARAMS = {"integrated_gradients": {"steps": 32}}


def parse_param(text: str) -> tuple[str, Any]:
    """One ``--param NAME=VALUE``: the value read as JSON (a list becomes a per-axis tuple), else as text."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--param {text!r}: use NAME=VALUE")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(value, list):
        value = tuple(value)
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="napari-xai-explain",
        description="Explain a PyTorch model's decision on CT/MRI scans; write maps aligned with each scan (and overlay PNGs).",
    )
    parser.add_argument("--sample", action="store_true", help="use the bundled sample brain MRI and lesion classifier")
    parser.add_argument("--model", help="model file (.pt2, TorchScript, weights + <stem>.json spec, or a spec .json), MONAI bundle folder or nnU-Net results folder")
    parser.add_argument("--image", nargs="+", default=[], help="scan(s): NIfTI, NRRD, MHA or a DICOM series folder")
    parser.add_argument("--method", action="append", help="method name (repeatable); see --list-methods")
    parser.add_argument("--target", help="class index or label (default: the predicted class)")
    parser.add_argument("--region", help="segmentation models: region mask image on the scan's grid")
    parser.add_argument("--reduce", choices=("sum", "mean"), default="sum", help="reduction of the class logits over the region")
    parser.add_argument("--param", action="append", type=parse_param, default=[], help="method parameter NAME=VALUE (repeatable)")
    parser.add_argument("--out", default="napari_xai_output", help="output folder")
    parser.add_argument("--format", default=".nii.gz", choices=(".nii.gz", ".nii", ".nrrd", ".mha"), help="map file format")
    parser.add_argument("--overwrite", action="store_true", help="replace maps and figures that exist already (never the input scans)")
    parser.add_argument("--no-png", action="store_true", help="do not write overlay figures")
    parser.add_argument("--layout", default="orthogonal", choices=("orthogonal", "montage"), help="overlay figure layout")
    parser.add_argument("--report", action="store_true", help="also write a PDF report (and its pages as PNG) per scan, all methods in one")
    parser.add_argument("--no-metrics", action="store_true", help="report: skip the engine's evaluation in the trust table (keep the methods' own checks)")
    parser.add_argument("--dicom", action="store_true", help="DICOM series inputs: also write each map as a DICOM Parametric Map (highdicom)")
    parser.add_argument("--dicom-overlay", action="store_true", help="with --dicom: also the overlay as a Secondary Capture series")
    parser.add_argument("--limits", nargs=2, type=float, metavar=("LOW", "HIGH"), help="colour limits of the overlay figures (default: from the map's values)")
    parser.add_argument("--outline", help="mask image on the scan's grid drawn as an outline on the figures (default: the region; with --sample, the sample's lesions)")
    parser.add_argument("--dpi", type=int, default=300, help="resolution of the overlay figures (default 300, for print)")
    parser.add_argument("--memory-budget-mb", type=int, help="working memory per batch")
    parser.add_argument("--trust-pickle", action="store_true", help="allow a pickled whole-model file (runs code from the file: only for files you trust)")
    parser.add_argument("--trust-bundle-code", action="store_true", help="MONAI bundle: parse the whole config, running its expressions and scripts/ (only for bundles you trust)")
    parser.add_argument("--folds", help="nnU-Net folder: fold(s) to use, e.g. 0 or 0,1,2 or all (default: every fold, averaged)")
    parser.add_argument(
        "--architecture",
        action="append",
        default=[],
        metavar="MODULE:CLASS",
        help="allow a weights file's spec to name this architecture (imports MODULE: only for code you trust; repeatable)",
    )
    parser.add_argument("--list-methods", action="store_true", help="list the methods and their parameters, then exit")
    return parser


def _print_methods() -> None:
    for spec in list_methods():
        print(f"{spec.name:24s} {spec.family:18s} {spec.summary}")
        for p in spec.params:
            print(f"    {p.name}={p.default!r}: {p.help}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a user error)."""
    args = build_parser().parse_args(argv)
    if args.list_methods:
        _print_methods()
        return 0
    return exit_status("napari-xai-explain", lambda: _run(args))


def exit_status(prog: str, work: Callable[[], int], interrupted: str = "interrupted") -> int:
    """``work()``'s exit status; a user error is its message on stderr and 2, a cancel or Ctrl+C 130 (shared with napari-xai-cohort)."""
    try:
        return work()
    except XAIError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    except Cancelled:
        print(f"{prog}: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.sample:
        from napari_xai.samples import LESION_CLASSIFIER_SPEC, SAMPLE_SCAN

        model_path = args.model or str(LESION_CLASSIFIER_SPEC)
        images = args.image or [str(SAMPLE_SCAN)]
        methods = args.method or list(DEFAULT_SAMPLE_METHODS)
    else:
        if not args.model or not args.image:
            print("napari-xai-explain: give --model and --image, or --sample (try --help)", file=sys.stderr)
            return 2
        model_path, images, methods = args.model, args.image, args.method or ["integrated_gradients"]
    per_method = method_params(methods, dict(args.param))
    if args.dicom or args.dicom_overlay:
        not_dicom = [p for p in images if not is_dicom_series_folder(p)]
        if not_dicom:
            raise ImageError(f"--dicom needs DICOM series folders as --image; {not_dicom[0]} is not one.", "Drop --dicom for NIfTI/NRRD/MHA scans, or give the series folder.")
    model, _ = MODELS.load(model_path, trust_pickle=args.trust_pickle, **model_options(args))
    region = read_image(args.region).array if args.region else None
    outline, outline_label = _outline(args, region != 0 if region is not None else None)
    out = Path(args.out)
    stems = output_stems(images)
    print(f"model: {model.name} ({model.kind}, weights sha256 {model.identity[:12]})")
    table: list[tuple[str, str, str]] = []
    for image_path, image_stem in zip(images, stems):
        scan = read_image(image_path)
        maps = []
        for warning in scan.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        for name in methods:
            spec = get_method(name)
            own = {**SAMPLE_PARAMS.get(name, {}), **per_method[name]} if args.sample else per_method[name]
            job = Job(model, scan, name, args.target, region, args.reduce, own, memory_budget_mb=args.memory_budget_mb)
            cost = job.estimate()
            if cost.needs_confirmation:
                print(f"napari-xai-explain: {scan.name} / {spec.title} will take long: {cost.describe()} (Ctrl+C stops it)", file=sys.stderr)
            t0 = time.perf_counter()
            bar = ProgressBar(f"{scan.name} / {spec.title} (estimated {format_seconds(cost.seconds)})")
            try:
                attribution = job.run(on_progress=bar.show)
            finally:
                bar.close()
            stem = out / f"{image_stem}_{spec.name}"
            png_path = Path(str(stem) + ".png")
            if not args.no_png:
                check_writable(png_path, overwrite=args.overwrite, source=scan.source.get("path"))
            map_path = attribution.save(str(stem) + args.format, overwrite=args.overwrite)
            table.append((str(image_path), spec.name, str(map_path)))
            line = f"{scan.name} / {spec.title}: {attribution.target['description']} ({attribution.score_text()}) -> {map_path}"
            if not args.no_png:
                mask = outline if outline is not None and outline.shape == scan.spatial_shape else None
                if args.outline and mask is None:
                    raise ImageError(
                        f"The outline mask {args.outline} has shape {outline.shape}, the scan {scan.name} {scan.spatial_shape}.",
                        "Give a mask on the scan's own grid (e.g. a segmentation saved from this scan).",
                    )
                png = render_overlay(scan, attribution, str(png_path), layout=args.layout, limits=tuple(args.limits) if args.limits else None, mask=mask, mask_label=outline_label, dpi=args.dpi)
                line += f", {png.name}"
            if args.dicom or args.dicom_overlay:
                check_writable(Path(str(stem) + "_pm.dcm"), overwrite=args.overwrite, source=scan.source.get("path"))
                dicom = write_parametric_map(attribution, image_path, str(stem) + "_pm.dcm", scan=scan, secondary_capture=args.dicom_overlay)
                line += f", {dicom.parametric_map.name}" + (f" (+{len(dicom.secondary_capture)} overlay slices)" if dicom.secondary_capture else "")
            note = completeness_note(attribution.checks)
            line += f"; {note}" if note else ""
            print(f"{line} [{time.perf_counter() - t0:.1f} s]")
            maps.append(attribution)
        if args.report:
            trust = [trust_metrics(a, model=model, image=scan, evaluate=not args.no_metrics, on_error="record") for a in maps]
            check_writable(out / f"{image_stem}_report.pdf", overwrite=args.overwrite, source=scan.source.get("path"))
            report = write_report(scan, maps, out / f"{image_stem}_report.pdf", trust=trust, image_path=image_path)
            print(f"{scan.name}: report {report.pdf} ({len(report.pages)} pages)")
    print("\ninput\tmethod\tmap")
    for row in table:
        print("\t".join(row))
    return 0


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """load_model's options from ``--architecture``, ``--trust-bundle-code`` and ``--folds`` (shared with napari-xai-cohort)."""
    options: dict[str, Any] = {}
    if getattr(args, "architecture", None):
        options["architectures"] = list(args.architecture)
    if args.trust_bundle_code:
        options["trust_bundle_code"] = True
    if args.folds:
        options["folds"] = [f.strip() for f in args.folds.split(",")]
    return options


def output_stems(images: Sequence[str]) -> list[str]:
    """A distinct output name per input: the scan's name, prefixed with as many parent folders as it takes to tell
    inputs of the same name apart (``a/scan.nii.gz`` and ``b/scan.nii.gz`` give ``a_scan`` and ``b_scan``), numbered last."""
    paths = [Path(p).resolve() for p in images]
    names = [scan_name(p) for p in paths]
    depth = [0] * len(paths)

    def stem(i: int) -> str:
        parents = paths[i].parent.parts[-depth[i]:] if depth[i] else ()
        return "_".join(part.strip("/\\") for part in (*parents, names[i]) if part.strip("/\\"))

    for _ in range(max((len(p.parts) for p in paths), default=0)):
        seen: dict[str, list[int]] = {}
        for i in range(len(paths)):
            seen.setdefault(stem(i), []).append(i)
        clashes = [group for group in seen.values() if len({paths[i] for i in group}) > 1]
        if not clashes:
            break
        for group in clashes:
            for i in group:
                depth[i] += 1
    stems = [stem(i) for i in range(len(paths))]
    counts: dict[str, int] = {}
    for i, s in enumerate(stems):  # the same input given twice
        counts[s] = counts.get(s, 0) + 1
        if counts[s] > 1:
            stems[i] = f"{s}_{counts[s]}"
    return stems


def _outline(args: argparse.Namespace, region: Any) -> tuple[Any, str]:
    """The mask outlined on the figures and what it is: --outline, else the region, else the sample's lesions."""
    if args.outline:
        return read_image(args.outline).array.astype(bool), f"mask {Path(args.outline).name}"
    if region is not None:
        return region, "the explained region"
    if args.sample and not args.image:
        from napari_xai.samples import SAMPLE_LESION_MASK

        return read_image(SAMPLE_LESION_MASK).array.astype(bool), "the sample's simulated lesions (ground truth)"
    return None, "mask"


class ProgressBar:
    """One tqdm bar per method run, on stderr; silent when stderr is not a terminal (logs, pipes).

    Parameters
    ----------
    label : str
        Scan and method, shown before the bar.
    file : file-like, optional
        Where the bar is drawn (default: stderr).
    disable : bool or None
        tqdm's switch: None draws only on a terminal.
    """

    def __init__(self, label: str, file: Any = None, disable: bool | None = None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=1000, desc=label, file=file or sys.stderr, disable=disable, leave=False, dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def show(self, event: Progress) -> None:
        """An engine progress event: move the bar to its fraction, show its message."""
        n = int(1000 * event.fraction)
        if n > self._bar.n:
            self._bar.update(n - self._bar.n)
        if event.message:
            self._bar.set_postfix_str(event.message[-60:])  # redraws: events come one per batch (~0.3 s)

    def close(self) -> None:
        """Remove the bar (the result line replaces it)."""
        self._bar.close()


if __name__ == "__main__":
    raise SystemExit(main())
