"""The pieces methods are built from: the public toolkit for method authors.

A method is one file that declares its :class:`~napari_xai.engine.MethodSpec`
and its ``run(ctx, params)`` generator from these pieces (see
``docs/architecture.md``, "Adding a method", for a whole example):

- :class:`MethodContext` (``context``): the model, the model-space input
  ``ctx.x``, the target, the memory budget; ``ctx.scores(xb)`` and
  ``ctx.gradients(xb)`` for batches, ``ctx.planner()`` to size them, and
  ``ctx.checks`` for what the run measured (e.g. :func:`record_completeness`).
- Gradients (``gradients``): :func:`checked_grad` and :func:`input_gradient`,
  which refuse a model whose output is not differentiable with one message,
  and :func:`scored_leaf` (input_gradient's leaf and scores, for a method
  that yields between its forward and backward passes).
- Hooks (``hooks``): :func:`forward_hooks` (registered for a block, always
  removed), :func:`output_hooks` (replace the output of every layer of some
  types on a private copy) and :func:`copy_model` (that private copy).
- Layers (``layers``): :func:`find_cam_layer`, :func:`capture_activation`,
  :func:`activation_and_gradient`, :func:`require_spatial` and the ``layer`` parameter.
- Perturbation (``perturbation``): :func:`reference` images,
  :func:`blend`, :func:`occluded`, :func:`gaussian_blur` and the
  perturb-and-score loop :func:`scored_batches`, which runs a long loop in
  the network's faster memory layout (``layout``, internal).
- Resampling (``resample``): :func:`upsample` (bilinear / trilinear).
- Parameters (``params``): ``seed``, ``baseline``, ``blur_sigma``,
  ``absolute`` and ``relu`` declared once; :func:`per_axis` for per-axis values.
- Recipes (``recipes``): :func:`single_pass_run`, a whole one-pass gradient
  method from its ``batch_map`` (which also lets SmoothGrad and VarGrad wrap it).

Everything listed in ``__all__`` is public and kept stable; the submodules
are where each piece lives.
"""

from ...call_hooks import forward_hooks, output_hooks, run_local_forward_hooks
from ...registry import per_axis
from .context import MethodContext, baseline_value, model_failure, record_completeness
from .gradients import checked_grad, input_gradient, not_differentiable, scored_leaf
from .layers import LAYER_PARAM, activation_and_gradient, capture_activation, find_cam_layer, require_spatial
from .model_copy import copy_model
from .params import ABSOLUTE, BLUR_SIGMA, CONSTANT_BASELINES, RELU, baseline_param, blur_sigma_param, seed_param
from .perturbation import BASELINES, OPERATORS, blend, gaussian_blur, occluded, reference, scored_batches
from .recipes import single_pass_run
from .resample import upsample

__all__ = [
    "ABSOLUTE",
    "BASELINES",
    "BLUR_SIGMA",
    "CONSTANT_BASELINES",
    "LAYER_PARAM",
    "OPERATORS",
    "RELU",
    "MethodContext",
    "activation_and_gradient",
    "baseline_param",
    "baseline_value",
    "blend",
    "blur_sigma_param",
    "capture_activation",
    "checked_grad",
    "copy_model",
    "find_cam_layer",
    "require_spatial",
    "forward_hooks",
    "gaussian_blur",
    "input_gradient",
    "model_failure",
    "not_differentiable",
    "occluded",
    "output_hooks",
    "per_axis",
    "record_completeness",
    "reference",
    "run_local_forward_hooks",
    "scored_batches",
    "scored_leaf",
    "seed_param",
    "single_pass_run",
    "upsample",
]
