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
from .budget import counted_activations, default_budget_mb
from .call_hooks import shared_eval_mode
from .errors import MethodError, ModelError, TargetError, XAIError
from .image import as_scan
from .methods._context import MethodContext, model_failure
from .methods._windows import windowed_model
from .model_space import region_to_model_space, to_model_space, to_scan_grid
from .models.loading import as_loaded_model
from .progress import Progress, run_to_end
from .registry import get_method
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
    method_spec = get_method(method)
    loaded = as_loaded_model(model, spec)
    scan = as_scan(image, channel_axis=channel_axis)
    checked = method_spec.validate_params(params)
    _check_needs(method_spec.needs, loaded)
    budget = checked_budget(memory_budget_mb)
    msi = to_model_space(scan, loaded.spec)
    region_model = None
    if region is not None:
        region = boolean_region(region)
        if region.shape != scan.spatial_shape:
            raise TargetError(
                f"The region has shape {region.shape} but the image has {scan.spatial_shape}.",
                "Draw the region on the image's own grid (a Labels layer or segment made from this image).",
            )
        region_model = region_to_model_space(region, msi)
        if not region_model.any():
            raise TargetError("The region is empty.", "Paint at least one voxel, or leave the region unset to use the predicted mask.")
    yield Progress(0, 0, f"{method_spec.title}: preparing")
    device = _module_device(loaded.module)
    x = msi.tensor.to(device)
    def resolver(output: torch.Tensor) -> ResolvedTarget:
        output = _checked_output(output)
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
                    resolved = resolver(_forward_once(loaded.module, x))
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


def checked_budget(memory_budget_mb: Any) -> int:
    """The memory budget in MiB: the argument if it is a positive finite number, else the default when None.

    Raises
    ------
    MethodError
        Not a number, NaN, infinite, or below 1 MiB.
    """
    if memory_budget_mb is None:
        return default_budget_mb()
    ok = isinstance(memory_budget_mb, (int, float, np.integer, np.floating)) and not isinstance(memory_budget_mb, bool)
    if not ok or not np.isfinite(memory_budget_mb) or memory_budget_mb < 1:
        raise MethodError(
            f"The memory budget is {memory_budget_mb!r}; it must be a finite number of MiB, at least 1.",
            "Give memory_budget_mb as a positive number, e.g. 2048, or leave it unset for the default.",
        )
    return int(memory_budget_mb)


def boolean_region(region: Any) -> np.ndarray:
    """The region as a boolean mask: bool arrays as they are, integer or float arrays only if they hold just 0 and 1.

    Raises
    ------
    TargetError
        The region holds other values (a soft mask, NaN, labels > 1) or is not numeric.
    """
    arr = np.asarray(region)
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TargetError(
            f"The region has dtype {arr.dtype}, not a mask.",
            "Pass a boolean mask (or integers / floats holding only 0 and 1) on the image's grid.",
        )
    other = ~np.isin(arr, (0, 1))
    if other.any():
        example = arr[other].flat[0]
        raise TargetError(
            f"The region holds {int(other.sum())} value(s) other than 0 and 1 (e.g. {example!r}); "
            "it is not a mask, and taking every non-zero voxel would explain a different region.",
            "Threshold it into a boolean mask first, e.g. region = soft_mask > 0.5, or pick one label: region = labels == k.",
        )
    return arr == 1


def _check_needs(needs: frozenset[str], loaded: Any) -> None:
    if "layer" in needs and not loaded.takes_hooks:
        loaded.get_layer("")  # raises the message that names the fix


def _module_device(module: nn.Module) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _forward_once(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    try:
        with torch.inference_mode():
            output = module(x)
    except XAIError:
        raise
    except Exception as err:  # any failure inside a user's model
        raise model_failure(err, x) from err
    return _checked_output(output).clone()


def _checked_output(output: Any) -> torch.Tensor:
    """The model's output on the scan, if it is one finite tensor (else a :class:`ModelError`)."""
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        raise ModelError(
            f"The model returns a {type(output).__name__} of {len(output)} outputs.",
            "Wrap it so that forward returns one tensor (e.g. lambda x: model(x)[0] in an nn.Module).",
        )
    if not isinstance(output, torch.Tensor):
        raise ModelError(f"The model returns a {type(output).__name__}, not a tensor.", "Make forward return the logits tensor.")
    if not torch.isfinite(output).all():
        raise ModelError(
            "The model's output on this image holds NaN or infinite values.",
            "Check the intensity transform in the spec (the model may expect normalised input) and the model itself.",
        )
    return output


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
