"""Score-CAM: feature maps weighted by the score gained when each one masks the input.

**Score-CAM** (Wang et al. 2020, review ref. [67]): each channel,
upsampled and min-max normalised to [0, 1], masks the input (blending to
a baseline), and its weight is the target score's increase over the
baseline's score. Channels run in batches of forward passes sized from the
memory budget under ``torch.inference_mode``, with progress and cancel
between batches (pytorch-grad-cam builds channels x input at once and is
2D only). ``softmax=True`` normalises the weights with a softmax over
channels, as pytorch-grad-cam does; the default keeps the raw increases.

Tests check it against a hand computation of Wang et al.'s definition.
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np
import torch

from ...progress import Progress
from ...registry import MethodSpec, ParamSpec, register_method
from ..toolkit.context import MethodContext, baseline_value
from ..toolkit.layers import LAYER_PARAM, capture_activation, find_cam_layer, require_spatial
from ..toolkit.params import RELU, baseline_param
from ..toolkit.perturbation import scored_batches
from ..toolkit.resample import upsample
from .cam import CAM


def _score_cam(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    name = find_cam_layer(ctx, params["layer"])
    ctx.checks["layer"] = name
    with capture_activation(ctx.model.get_layer(name)) as store, torch.inference_mode():
        ctx.module(ctx.x)
        require_spatial(ctx, name, store.get("activation"))
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
