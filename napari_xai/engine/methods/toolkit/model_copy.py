"""A private copy of the model, for methods that change how gradients flow through its layers.

Guided Backprop, DeconvNet, DeepLIFT and LRP put rule hooks on the layers of
a deep copy (the user's model is never mutated, not even temporarily); the
copy is dropped when the run ends and costs one more set of weights.
"""

from __future__ import annotations

import copy

import torch.nn as nn

from ...errors import MethodError
from .context import MethodContext


def copy_model(ctx: MethodContext, method: str) -> nn.Module:
    """An eval-mode deep copy of the model whose ReLUs are not in-place.

    Raises
    ------
    MethodError
        The model takes no hooks (TorchScript) or cannot be copied.
    """
    if not ctx.model.takes_hooks:
        raise MethodError(
            f"{method} changes how gradients flow through the model's layers, which needs forward hooks, "
            "and a loaded TorchScript module takes none.",
            "Export the model with torch.export (a .pt2 archive) or give its weights plus a spec, "
            "or use Vanilla Gradient, Input x Gradient, Integrated Gradients or SmoothGrad on them.",
        )
    try:
        clone = copy.deepcopy(ctx.module)
    except Exception as err:  # any object the user's module holds may refuse to be copied
        raise MethodError(
            f"{method} works on a private copy of the model, and this model cannot be copied ({type(err).__name__}: {err}).",
            "Give the model as weights plus a spec or a torch.export archive, or use Vanilla Gradient / Integrated Gradients.",
        ) from err
    clone.eval()
    for m in clone.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    return clone
