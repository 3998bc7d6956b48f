"""nnU-Net's sliding-window prediction, transcribed from nnU-Net v2's source for use as a reference.

nnunetv2 cannot be installed here (it pulls a CUDA build of torch), so its
``compute_steps_for_sliding_window`` and ``compute_gaussian``
(``nnunetv2/inference/sliding_window_prediction.py``) and the loop of
``nnUNetPredictor.predict_sliding_window_return_logits`` /
``_internal_predict_sliding_window_return_logits``
(``nnunetv2/inference/predict_from_raw_data.py``; CPU, no mirroring) are
written out below as they read there, float32 instead of float16.
"""

from __future__ import annotations

import numpy as np
import torch


def nnunet_steps(image_size, tile_size, tile_step_size=0.5):
    """``compute_steps_for_sliding_window``."""
    target = [i * tile_step_size for i in tile_size]
    num_steps = [int(np.ceil((i - k) / j)) + 1 for i, j, k in zip(image_size, target, tile_size)]
    steps = []
    for dim in range(len(tile_size)):
        max_step = image_size[dim] - tile_size[dim]
        actual = max_step / (num_steps[dim] - 1) if num_steps[dim] > 1 else 99999999999
        steps.append([int(np.round(actual * i)) for i in range(num_steps[dim])])
    return steps


def nnunet_gaussian(tile_size, sigma_scale=1.0 / 8, value_scaling_factor=10.0):
    """``compute_gaussian``."""
    from scipy.ndimage import gaussian_filter

    tmp = np.zeros(tile_size)
    tmp[tuple(i // 2 for i in tile_size)] = 1
    g = gaussian_filter(tmp, [i * sigma_scale for i in tile_size], 0, mode="constant", cval=0)
    g /= np.max(g) / value_scaling_factor
    g = torch.from_numpy(g).float()
    g[g == 0] = torch.min(g[g != 0])
    return g


@torch.no_grad()
def nnunet_predict(net, data, patch, step=0.5):
    """``predict_sliding_window_return_logits`` on ``data`` ``(C, *spatial)``: pad to the patch, blend, crop."""
    shape = data.shape[1:]
    pads = [max(0, p - s) for p, s in zip(patch, shape)]
    lo = [d // 2 for d in pads]  # acvl_utils' pad_nd_image: difference // 2 below, the rest above
    padded = torch.nn.functional.pad(data, [v for d, low in zip(pads[::-1], lo[::-1]) for v in (low, d - low)])
    steps = nnunet_steps(padded.shape[1:], patch, step)
    g = nnunet_gaussian(tuple(patch))
    logits = n = None
    for sx in steps[0]:
        for sy in steps[1]:
            for sz in steps[2]:
                sl = (slice(sx, sx + patch[0]), slice(sy, sy + patch[1]), slice(sz, sz + patch[2]))
                pred = net(padded[(slice(None), *sl)][None])[0] * g
                if logits is None:
                    logits = torch.zeros((pred.shape[0], *padded.shape[1:]))
                    n = torch.zeros(padded.shape[1:])
                logits[(slice(None), *sl)] += pred
                n[sl] += g
    logits /= n
    return logits[(slice(None), *[slice(low, low + s) for low, s in zip(lo, shape)])]
