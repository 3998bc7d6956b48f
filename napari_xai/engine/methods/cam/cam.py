"""CAM: a layer's feature maps weighted by the class weights of a global-average-pooling + linear head.

**CAM** (Zhou et al. 2016, review ref. [61]): ``sum_k w_ck A_k`` for a
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

Hand-written because they must work on 3D layers and region targets and keep
raw values; tests check CAM against MONAI's ``CAM`` and the CAM = Grad-CAM x constant identity on a GAP + linear
network, and Guided Grad-CAM against Captum's ``GuidedGradCam``.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Generator, Iterator

import numpy as np
import torch
import torch.nn as nn

from ...call_hooks import run_local_forward_hooks
from ...errors import MethodError
from ...progress import Progress
from ...registry import MethodSpec, register_method
from ..toolkit.context import MethodContext
from ..toolkit.layers import LAYER_PARAM, activation_and_gradient, find_cam_layer
from ..toolkit.resample import upsample


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
