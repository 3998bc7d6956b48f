"""CAM, Grad-CAM++, Score-CAM and Guided Grad-CAM: class activation maps of one layer.

All four read the feature maps ``A`` of one layer: by default the last layer
with a spatial output (``_layers.find_cam_layer``), else the spec's
``cam_layer``, else the ``layer`` parameter (a dotted module name). Maps are
computed on the layer's grid and upsampled to the model input (bilinear in
2D, trilinear in 3D). Values stay raw: nothing is min-max scaled, clipped
(other than each paper's ReLU, which ``relu=False`` switches off) or inverted
(MONAI's CAM classes invert by default; pytorch-grad-cam clips and rescales).
Region targets of segmentation networks work like class targets, since every
method goes through the engine's target score.

- **CAM** (Zhou et al. 2016, review ref. [61]): ``sum_k w_ck A_k`` for a
  network whose head is global average pooling + a linear layer. The head is
  detected numerically rather than by module type: the target score must be
  *linear* in the layer's activation (checked with three extra forward passes
  that replace the activation), and the class weights ``w_ck`` are read off
  the gradient, ``w_ck(u) = n * dS/dA_k(u)`` with ``n`` the number of layer
  voxels. For a GAP + linear head this is exactly Zhou's CAM (the gradient is
  ``w_ck / n`` at every voxel); the same exact decomposition
  (``mean_u CAM(u) = S - S(A=0)``) also holds for other heads linear in the
  layer, e.g. a mask followed by GAP + linear, or a 1x1-convolution
  segmentation head. A head that is not linear (hidden layers, ReLU, max
  pooling after the layer) raises a :class:`MethodError` naming the fix.
  Signed (no ReLU in the paper).
- **Grad-CAM++** (Chattopadhyay et al. 2018, review ref. [66]): feature maps
  weighted by ``sum_u alpha_k(u) relu(dS/dA_k(u))`` with the paper's
  closed-form ``alpha = g² / (2 g² + sum_u A g³)`` (first-order gradients
  only, as MONAI and pytorch-grad-cam). The paper's exponential output
  multiplies all weights by ``exp(S)``; that constant factor is left out (it
  overflows for region sums of a segmentation network).
- **Score-CAM** (Wang et al. 2020, review ref. [67]): each channel,
  upsampled and min-max normalised to [0, 1], masks the input (blending to
  a baseline), and its weight is the target score's increase over the
  baseline's score. Channels run in batches of forward passes sized from the
  memory budget under ``torch.inference_mode``, with progress and cancel
  between batches (pytorch-grad-cam builds channels x input at once and is
  2D only). ``softmax=True`` normalises the weights with a softmax over
  channels, as pytorch-grad-cam does; the default keeps the raw increases.
- **Guided Grad-CAM** (Selvaraju et al. 2017, review ref. [62]): Guided
  Backprop times the (ReLU'd) Grad-CAM, upsampled. Signed like Guided
  Backprop. Captum's ``GuidedGradCam`` upsamples with nearest neighbours by
  default; here the Grad-CAM factor is upsampled like every CAM (bilinear /
  trilinear), so the two agree exactly when the layer has the input's grid.

Hand-written because they must work on 3D layers and region targets and keep
raw values; tests check Grad-CAM++ against MONAI's ``GradCAMpp``, CAM against
MONAI's ``CAM`` and the CAM = Grad-CAM x constant identity on a GAP + linear
network, and Guided Grad-CAM against Captum's ``GuidedGradCam``.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Generator, Iterator

import numpy as np
import torch
import torch.nn as nn

from ..call_hooks import run_local_forward_hooks
from ..errors import MethodError
from ..progress import Progress
from ..registry import MethodSpec, ParamSpec, register_method
from ._modified import relu_rule_gradients
from .grad_cam import grad_cam_map
from .toolkit.context import MethodContext, baseline_value
from .toolkit.layers import LAYER_PARAM, activation_and_gradient, capture_activation, find_cam_layer
from .toolkit.model_copy import copy_model
from .toolkit.params import RELU, baseline_param
from .toolkit.perturbation import scored_batches
from .toolkit.resample import upsample

@contextlib.contextmanager
def replaced_activation(layer: nn.Module, value: torch.Tensor) -> Iterator[None]:
    """The layer's output is replaced by ``value`` during the block, in this thread's forward passes only."""
    with run_local_forward_hooks([(layer, lambda _m, _i, _o: value)]):
        yield


def head_linearity_error(ctx: MethodContext, name: str, act: torch.Tensor, grad: torch.Tensor, score: float) -> float:
    """Largest relative deviation of the score from linearity in the layer's activation.

    The score is evaluated with the layer's output replaced by ``0``, ``-A``,
    ``2A`` and ``A +- D`` (``D`` seeded noise as large as ``A``) and compared
    with the first-order prediction ``S + <dS/dA, A' - A>``; a head with a
    hidden ReLU, max pooling or a softmax after the layer fails this.
    """
    gen = torch.Generator(device="cpu").manual_seed(0)
    d = torch.randn(act.shape, generator=gen).to(act) * act.abs().mean().clamp(min=1e-6) * 2
    layer = ctx.model.get_layer(name)
    errs = []
    scale = float((grad.abs() * (act.abs() + d.abs())).sum()) * 2 + 1e-12
    for value in (torch.zeros_like(act), -act, 2 * act, act + d, act - d):
        expected = score + float((grad * (value - act)).sum())
        with replaced_activation(layer, value):
            got = float(ctx.scores(ctx.x)[0])
        errs.append(abs(got - expected) / scale)
    return max(errs)


def _cam(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    name = find_cam_layer(ctx, params["layer"])
    ctx.checks["layer"] = name
    yield Progress(0, 2, f"CAM on layer {name}")
    act, grad, score = activation_and_gradient(ctx, name)
    err = head_linearity_error(ctx, name, act, grad, float(score[0]))
    ctx.checks["head_linearity_error"] = err
    if err > 1e-3:
        raise MethodError(
            f"CAM needs a network whose head after layer {name!r} is global average pooling + a linear layer "
            f"(Zhou et al.), but the output of this model is not linear in that layer's activation (deviation {err:.2g}).",
            "Use Grad-CAM or Grad-CAM++, which generalise CAM to any head, or name (layer=...) the layer that feeds "
            "the global average pooling.",
        )
    n = math.prod(act.shape[2:])
    cam = (n * grad * act).sum(dim=1, keepdim=True)
    yield Progress(2, 2, "CAM: done")
    return upsample(cam, ctx.spatial_shape)[0, 0].cpu().numpy()


def _grad_cam_pp(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    name = find_cam_layer(ctx, params["layer"])
    ctx.checks["layer"] = name
    yield Progress(0, 1, f"Grad-CAM++ on layer {name}")
    if ctx.windows is not None:  # the carrying windows' layer voxels stand for the layer (methods/_windows.py)
        cam = ctx.windows.grad_cam_pp(ctx.model.get_layer(name), params["relu"])
        yield Progress(1, 1, "Grad-CAM++: done")
        return cam.cpu().numpy()
    act, grad, _ = activation_and_gradient(ctx, name)
    act, grad = act.double(), grad.double()
    axes = tuple(range(2, act.ndim))
    g2, g3 = grad.pow(2), grad.pow(3)
    denom = 2 * g2 + (act * g3).sum(dim=axes, keepdim=True)
    denom = torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = g2 / denom
    weights = (alpha * torch.relu(grad)).sum(dim=axes, keepdim=True)
    cam = (weights * act).sum(dim=1, keepdim=True)
    if params["relu"]:
        cam = torch.relu(cam)
    yield Progress(1, 1, "Grad-CAM++: done")
    return upsample(cam.float(), ctx.spatial_shape)[0, 0].cpu().numpy()


def _score_cam(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    name = find_cam_layer(ctx, params["layer"])
    ctx.checks["layer"] = name
    with capture_activation(ctx.model.get_layer(name)) as store, torch.inference_mode():
        ctx.module(ctx.x)
        act = store["activation"].detach().clone()
    act = act.clone()  # a normal tensor (outside inference mode)
    k = act.shape[1]
    base = torch.full_like(ctx.x, baseline_value(ctx.x, params["baseline"]))
    base_score = float(ctx.scores(base)[0])
    weights = torch.zeros(k, dtype=torch.float64)

    def masked(lo: int, hi: int) -> torch.Tensor:
        maps = upsample(act[0, lo:hi, None].float(), ctx.spatial_shape)  # (n, 1, *spatial)
        flat = maps.flatten(1)
        mn, mx = flat.min(dim=1).values, flat.max(dim=1).values
        span = (mx - mn).view(-1, *([1] * (maps.ndim - 1)))
        masks = torch.where(span > 0, (maps - mn.view_as(span)) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(maps))
        return base + (ctx.x - base) * masks

    yield Progress(0, k, f"Score-CAM on layer {name}: {k} channels")
    for lo, hi, scores in scored_batches(ctx, k, masked):
        weights[lo:hi] = scores.double().cpu() - base_score
        yield Progress(hi, k, f"Score-CAM: {hi}/{k} channels")
    if params["softmax"]:
        weights = torch.softmax(weights, dim=0)
    ctx.checks["channel_weights"] = weights.tolist()
    w = weights.to(act).view(1, k, *([1] * (act.ndim - 2)))
    cam = (w * act).sum(dim=1, keepdim=True)
    if params["relu"]:
        cam = torch.relu(cam)
    return upsample(cam.float(), ctx.spatial_shape)[0, 0].cpu().numpy()


def _guided_grad_cam(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    name = find_cam_layer(ctx, params["layer"])
    ctx.checks["layer"] = name
    yield Progress(0, 2, f"Guided Grad-CAM on layer {name}")
    act, grad, _ = activation_and_gradient(ctx, name)
    cam = upsample(grad_cam_map(act, grad, relu=True), ctx.spatial_shape)
    yield Progress(1, 2, "Guided Grad-CAM: guided backprop")
    guided = relu_rule_gradients(ctx, copy_model(ctx, "Guided Grad-CAM"), ctx.x, "guided")
    yield Progress(2, 2, "Guided Grad-CAM: done")
    return (guided * cam)[0].cpu().numpy()


CAM = register_method(
    MethodSpec(
        name="cam",
        title="CAM",
        family="class activation",
        reference="Zhou B, Khosla A, Lapedriza A, Oliva A, Torralba A. Learning Deep Features for Discriminative Localization. "
        "CVPR 2016 (review ref. [61]).",
        summary="Feature maps weighted by the class weights of a global-average-pooling + linear head; exact, but needs that head.",
        needs=frozenset({"gradients", "layer"}),
        sign="signed",
        params=(LAYER_PARAM,),
        run=_cam,
        one_pass=True,
    )
)

GRAD_CAM_PP = register_method(
    MethodSpec(
        name="grad_cam_pp",
        title="Grad-CAM++",
        family="class activation",
        reference="Chattopadhyay A, Sarkar A, Howlader P, Balasubramanian VN. Grad-CAM++: Improved Visual Explanations for "
        "Deep Convolutional Networks. WACV 2018 (review ref. [66]).",
        summary="Grad-CAM with per-voxel weights of positive gradients: better coverage of several instances of a class.",
        needs=frozenset({"gradients", "layer"}),
        sign="signed",
        params=(LAYER_PARAM, RELU),
        run=_grad_cam_pp,
        one_pass=True,
        sign_param="relu",
    )
)

SCORE_CAM = register_method(
    MethodSpec(
        name="score_cam",
        title="Score-CAM",
        family="class activation",
        reference="Wang H, Wang Z, Du M, Yang F, Zhang Z, Ding S, Mardziel P, Hu X. Score-CAM: Score-Weighted Visual "
        "Explanations for Convolutional Neural Networks. CVPRW 2020 (review ref. [67]).",
        summary="Feature maps weighted by the score gained when each one masks the input: gradient-free, one forward pass per channel.",
        needs=frozenset({"layer", "forward"}),
        sign="signed",
        params=(
            LAYER_PARAM,
            baseline_param("What masked-out voxels are blended to"),
            ParamSpec("softmax", bool, False, "Softmax the channel weights (pytorch-grad-cam); off keeps the raw score increases."),
            RELU,
        ),
        run=_score_cam,
        sign_param="relu",
    )
)

GUIDED_GRAD_CAM = register_method(
    MethodSpec(
        name="guided_grad_cam",
        title="Guided Grad-CAM",
        family="class activation",
        reference="Selvaraju RR, Cogswell M, Das A, Vedantam R, Parikh D, Batra D. Grad-CAM: Visual Explanations From Deep "
        "Networks via Gradient-Based Localization. ICCV 2017 (review ref. [62]).",
        summary="Guided Backprop times the upsampled Grad-CAM: fine detail, class-specific.",
        needs=frozenset({"gradients", "layer"}),
        sign="signed",
        params=(LAYER_PARAM,),
        run=_guided_grad_cam,
        one_pass=True,
    )
)
