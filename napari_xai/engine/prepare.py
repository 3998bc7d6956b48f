"""The set-up every run shares: checked inputs in model space, and the model's pass on the unperturbed scan.

:func:`prepare_run` is the one place the method, its parameters, the model,
the scan, the memory budget, model space and the region are checked, so
:func:`~napari_xai.engine.explain_iter` and
:func:`~napari_xai.engine.estimate` refuse the same input with the same
message. :func:`forward_once` is the run's first pass (also used by
:func:`~napari_xai.engine.predict` and the trust metrics).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .budget import default_budget_mb
from .errors import MethodError, ModelError, TargetError, XAIError
from .image import ScanImage
from .model_space import ModelSpaceInput, region_to_model_space, to_model_space
from .models.loading import LoadedModel, as_loaded_model
from .registry import MethodSpec, get_method
from .scan_input import as_scan


@dataclass
class PreparedRun:
    """A run's checked inputs.

    Parameters
    ----------
    method : MethodSpec
    params : dict
        The method's parameters, defaults filled in, each checked.
    loaded : LoadedModel
    scan : ScanImage
    budget_mb : int
        Working memory for one batch.
    msi : ModelSpaceInput
        The scan in model space.
    region : numpy.ndarray or None
        The boolean region on the scan grid.
    region_model : numpy.ndarray or None
        The region on the model grid.
    """

    method: MethodSpec
    params: dict[str, Any]
    loaded: LoadedModel
    scan: ScanImage
    budget_mb: int
    msi: ModelSpaceInput
    region: np.ndarray | None
    region_model: np.ndarray | None


def prepare_run(
    model: Any,
    image: Any,
    method: str,
    params: dict[str, Any],
    region: np.ndarray | None = None,
    spec: Any = None,
    channel_axis: int | None = None,
    memory_budget_mb: Any = None,
) -> PreparedRun:
    """Check a run's inputs and map the scan (and region) into model space; arguments as for ``explain_iter``.

    Raises
    ------
    XAIError
        Unknown method, bad parameters, a model or image that cannot be
        read, a method the model cannot serve, a bad budget or region.
    """
    method_spec = get_method(method)
    loaded = as_loaded_model(model, spec)
    scan = as_scan(image, channel_axis=channel_axis)
    checked = method_spec.validate_params(params)
    if "layer" in method_spec.needs and not loaded.takes_hooks:
        loaded.get_layer("")  # raises the message that names the fix
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
    return PreparedRun(method_spec, checked, loaded, scan, budget, msi, region, region_model)


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


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter or buffer (CPU for a module with neither)."""
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device("cpu") if first is None else first.device


def forward_once(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output on ``x`` under inference mode, checked (:func:`checked_output`) and copied.

    Raises
    ------
    ModelError
        The model raised, or its output is not one finite tensor.
    """
    try:
        with torch.inference_mode():
            output = module(x)
    except XAIError:
        raise
    except Exception as err:  # any failure inside a user's model
        raise model_failure(err, x) from err
    return checked_output(output).clone()


def checked_output(output: Any) -> torch.Tensor:
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


def model_failure(err: Exception, x: torch.Tensor) -> ModelError:
    """A model that raised on the input, as a user-facing error."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ModelError(
        f"The model failed on an input of shape {tuple(x.shape)}: {first}",
        "Check that the image's dimensionality, channels and size fit the model, and give the model a spec "
        "(spatial_dims, in_channels, input_size or input_spacing) so the scan is resampled to what it expects.",
    )
