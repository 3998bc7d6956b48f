"""The engine's entry points: :func:`explain_iter` (a generator) and :func:`explain`.

Flow: scan + geometry -> model space -> method -> attribution in model space
-> back onto the scan grid -> :class:`Attribution` with the scan's geometry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import weakref
from typing import Any, Callable, Generator

import numpy as np
import torch
import torch.nn as nn

from .. import __version__
from .attribution import Attribution
from .budget import counted_activations
from .call_hooks import shared_eval_mode
from .errors import MethodError
from .methods.toolkit import MethodContext
from .methods.windowed_model import windowed_model
from .model_space import to_scan_grid
from .prepare import checked_output, forward_once, module_device, prepare_run
from .progress import Progress, run_to_end
from .targets import ResolvedTarget, resolve_target


def explain_iter(
    model: Any,
    image: Any,
    method: str,
    target: int | str | None = None,
    *,
    region: np.ndarray | None = None,
    reduce: str = "sum",
    spec: Any = None,
    channel_axis: int | None = None,
    memory_budget_mb: int | None = None,
    **params: Any,
) -> Generator[Progress, None, Attribution]:
    """Explain a model's output on an image, as a generator of progress events.

    Closing the generator (``gen.close()``, or a napari worker's ``quit()``)
    stops the work at the next event; events come at least every batch, and
    batches are sized to take well under a second.

    Parameters
    ----------
    model : torch.nn.Module, LoadedModel, str or PathLike
        An in-process module (fed the image as is unless ``spec`` says
        otherwise) or a model file (see :func:`load_model`).
    image : numpy.ndarray, ScanImage, SimpleITK.Image, str or PathLike
        2D ``(y, x)`` or 3D ``(z, y, x)``, optionally with a leading channel
        axis; numpy arrays get 1 mm identity geometry.
    method : str
        A registry name (see :func:`list_methods`), e.g. ``"integrated_gradients"``.
    target : int, str or None
        Class index or label; None: the predicted class. For segmentation
        models, the class explained over ``region``.
    region : numpy.ndarray, optional
        Boolean mask on the image grid (segmentation); None: the class's predicted mask.
    reduce : {"sum", "mean"}
        How the class's logits are reduced over the region.
    spec : ModelSpec, dict or path, optional
        Overrides the model's spec.
    channel_axis : int, optional
        Channel axis of a numpy image (moved to the front).
    memory_budget_mb : int, optional
        Working memory for one batch; default ``NAPARI_XAI_MEMORY_BUDGET_MB`` or 2048.
    **params
        Method parameters (see the method's spec).

    Yields
    ------
    Progress

    Returns
    -------
    Attribution
        As the generator's return value (``StopIteration.value``).

    Raises
    ------
    XAIError
        Any problem with the input, with a message naming the fix.
    """
    t0 = time.perf_counter()
    run = prepare_run(model, image, method, params, region, spec, channel_axis, memory_budget_mb)
    method_spec, checked, loaded, scan, budget, msi, region_model = (
        run.method, run.params, run.loaded, run.scan, run.budget_mb, run.msi, run.region_model
    )
    yield Progress(0, 0, f"{method_spec.title}: preparing")
    device = module_device(loaded.module)
    x = msi.tensor.to(device)

    def resolver(output: torch.Tensor) -> ResolvedTarget:
        output = checked_output(output)
        resolved = resolve_target(output, x, loaded.spec, target, region_model, reduce)
        resolved.score_value = float(resolved.score(output)[0])
        if resolved.task == "classification" and output.ndim == 2 and output.shape[1] > 1:
            resolved.probability = float(torch.softmax(output[0].detach().double(), dim=0)[resolved.class_index])
        return resolved

    if loaded.max_batch is None and loaded.kind == "export":  # a limit probed on an earlier run of this module
        known = _EXPORT_BATCH_LIMITS.get(loaded.module, _UNKNOWN)
        if known is not _UNKNOWN:
            loaded = dataclasses.replace(loaded, max_batch=known)
    activations = None
    with shared_eval_mode(loaded.module):
        windows = windowed_model(loaded, x, budget)
        if windows is not None:  # the spec's sliding windows: the output and the target from the windows that need it
            resolved = windows.resolve(loaded.spec, target, region_model, reduce)
        else:
            # A one-pass method resolves the target from its own first pass (with
            # gradients on); every other method gets it from one pass here, which
            # also measures the activations the batch planner needs (no probe pass).
            resolved = None
            if not method_spec.one_pass:
                with counted_activations(loaded.module) if loaded.takes_hooks else contextlib.nullcontext() as counted:
                    resolved = resolver(forward_once(loaded.module, x))
                activations = counted[0] if counted is not None else None
        if loaded.max_batch is None and loaded.kind == "export" and loaded.module not in _EXPORT_BATCH_LIMITS:
            # the caller's LoadedModel is not written to: this run uses a copy, the limit is kept per module
            loaded = dataclasses.replace(loaded, max_batch=_export_batch_limit(loaded.module, x if windows is None else windows.probe_input()))
        ctx = MethodContext(loaded, x, resolved, budget, resolver=resolver, windows=windows, _activation_bytes=activations)
        if resolved is not None:  # the model's pass on the scan is done: one event before the method's set-up
            yield Progress(0, 0, f"{method_spec.title}: model run on the scan")
        t_method = time.perf_counter()
        values = yield from method_spec.run(ctx, checked)
        t_back = time.perf_counter()
    if ctx.target is None:  # a one-pass method that never ran the model
        raise MethodError(f"{method_spec.title} did not run the model.", "Report this as a bug in the method.")
    resolved = ctx.target
    values = np.asarray(values, dtype=np.float32)
    keep_channels = method_spec.output == "image" and values.ndim == x.ndim - 1 and values.shape[0] > 1
    if values.ndim == x.ndim - 1 and not keep_channels:  # per-channel map: one map on the spatial grid
        values = values.sum(axis=0)
    if not np.isfinite(values).all():
        raise MethodError(
            f"{method_spec.title} produced NaN or infinite values on this model and image.",
            "Check the model for unstable operations (log of zero, division), or try another method.",
        )
    # a multi-channel synthetic image (activation maximisation) keeps its channels: each goes back to the scan grid
    on_scan = np.stack([to_scan_grid(v, msi) for v in values]) if keep_channels else to_scan_grid(values, msi)
    t_end = time.perf_counter()
    return Attribution(
        values=on_scan,
        geometry=scan.geometry,
        method=method_spec.name,
        method_title=method_spec.title,
        family=method_spec.family,
        sign=method_spec.output_sign(checked),
        target=resolved.to_dict(),
        params=checked,
        model={
            "name": loaded.name,
            "kind": loaded.kind,
            "source": loaded.source,
            "weights_sha256": loaded.identity,
            "spec": loaded.spec.to_dict(),
        },
        image_name=scan.name,
        timings={"prepare_s": t_method - t0, "method_s": t_back - t_method, "map_back_s": t_end - t_back, "total_s": t_end - t0},
        checks={**ctx.checks, "model_grid_is_scan_grid": msi.same_grid},
        package_version=__version__,
        image_source=dict(scan.source),
        warnings=list(scan.warnings),
    )


def explain(
    model: Any,
    image: Any,
    method: str,
    target: int | str | None = None,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    **kwargs: Any,
) -> Attribution:
    """Run :func:`explain_iter` to completion and return the :class:`Attribution`.

    Takes the same arguments as :func:`explain_iter`, plus:

    Parameters
    ----------
    on_progress : callable, optional
        Called with each :class:`Progress` event (e.g. to update a progress
        bar and process the host's events).
    should_cancel : callable, optional
        Polled after each event; when it returns True the run stops and
        :class:`Cancelled` is raised.

    Raises
    ------
    Cancelled
        ``should_cancel`` returned True.
    """
    return run_to_end(explain_iter(model, image, method, target, **kwargs), on_progress, should_cancel, method)


#: Batch limits probed for exported programs, per module (weakly: a dropped model is forgotten). A run
#: never writes the limit onto the caller's LoadedModel; two threads probing one module get one answer.
_EXPORT_BATCH_LIMITS: "weakref.WeakKeyDictionary[nn.Module, int | None]" = weakref.WeakKeyDictionary()
_EXPORT_BATCH_LOCK = threading.Lock()
_UNKNOWN = object()


def _export_batch_limit(module: nn.Module, x: torch.Tensor) -> int | None:
    """The batch limit of an exported program (1 or None), probed once per module and kept in :data:`_EXPORT_BATCH_LIMITS`."""
    with _EXPORT_BATCH_LOCK:
        if module not in _EXPORT_BATCH_LIMITS:
            _EXPORT_BATCH_LIMITS[module] = _probe_max_batch(module, x)
        return _EXPORT_BATCH_LIMITS[module]


def _probe_max_batch(module: nn.Module, x: torch.Tensor) -> int | None:
    """1 if the module (an exported program) only takes a batch of one, else None."""
    try:
        with torch.inference_mode():
            module(torch.cat([x, x]))
        return None
    except Exception:
        return 1
