"""Model-parameter randomisation (Adebayo et al., NeurIPS 2018) on a deep copy of the model.

The user's model is never touched: every randomised model is a
``copy.deepcopy`` whose weights are redrawn in place, from a seeded
generator (the global torch RNG is left alone).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch
import torch.nn as nn

from ..errors import MethodError
from ..models.loading import LoadedModel


def weight_layers(module: nn.Module) -> list[str]:
    """Names of the layers whose weights the test randomises, bottom (input) to top (output).

    A layer is a module with its own ``weight`` parameter of two or more
    axes (convolutions, linear layers, attention projections); the order is
    the modules' registration order, which for the usual ``nn.Sequential``
    and U-Net code is the forward order.
    """
    names = []
    for name, m in module.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(w, (nn.Parameter, torch.Tensor)) and w.ndim >= 2 and any(p is w for p in m.parameters(recurse=False)):
            names.append(name)
    return names


def cascade_checkpoints(n_layers: int, steps: int) -> list[int]:
    """How many top layers are randomised at each cascading checkpoint: ``steps`` values ending with all ``n_layers``."""
    if n_layers == 0:
        return []
    return sorted({int(np.ceil(n_layers * (i + 1) / steps)) for i in range(min(steps, n_layers))})


def independent_layers(n_layers: int, steps: int) -> list[int]:
    """Indices (bottom = 0) of the layers randomised one at a time: ``steps`` spread from top to bottom."""
    if n_layers == 0:
        return []
    picks = np.linspace(n_layers - 1, 0, min(steps, n_layers))
    return sorted({int(round(p)) for p in picks}, reverse=True)


def randomised_copy(loaded: LoadedModel, layers: list[str], seed: int) -> LoadedModel:
    """A deep copy of ``loaded`` with the weights and biases of ``layers`` redrawn.

    Each tensor is drawn from a normal distribution with the original
    tensor's standard deviation (a zero-spread tensor, such as a bias
    initialised to zero, gets a spread of 0.01), so activations keep their
    scale and the network stays numerically sane.

    Raises
    ------
    MethodError
        The model cannot be copied (some compiled or exported modules).
    """
    try:
        module = copy.deepcopy(loaded.module)
    except Exception as err:  # a module type without deepcopy support
        raise MethodError(
            f"The model cannot be copied for the randomisation test ({type(err).__name__}: {err}).",
            "Evaluate without the sanity check (metrics without 'sanity'), or give the model as weights + spec.",
        ) from err
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.no_grad():
        for name in layers:
            layer = module.get_submodule(name)
            for p in layer.parameters(recurse=False):
                spread = float(p.detach().float().std()) if p.numel() > 1 else 0.0
                spread = spread if np.isfinite(spread) and spread > 0 else 0.01
                p.copy_((torch.randn(p.shape, generator=g) * spread).to(dtype=p.dtype, device=p.device))
    return replace(loaded, module=module, identity=f"{loaded.identity}:randomised:{','.join(layers)}:{seed}", extra=dict(loaded.extra))
