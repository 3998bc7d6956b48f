"""Model-parameter randomisation (Adebayo et al., NeurIPS 2018) on a deep copy of the model.

The user's model is never touched: every randomised model is a copy whose
weights are redrawn in place, from a seeded generator (the global torch RNG
is left alone). The copy is a ``copy.deepcopy`` (eager modules and
TorchScript modules); a module that cannot be deep-copied, such as the one
``torch.export.unflatten`` makes of a ``.pt2`` archive (its graphs hold
symbolic shapes that deepcopy refuses), is copied module by module instead:
every module object, its parameters and buffers (cloned) and its hook
tables are new, and the code (graphs, compiled TorchScript) is shared, since
running it never changes it.
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
    module = model_copy(loaded.module)
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    # ScriptModules have no get_submodule; named_modules serves every kind.
    submodules = dict(module.named_modules())
    with torch.no_grad():
        for name in layers:
            layer = submodules[name]
            for p in layer.parameters(recurse=False):
                spread = float(p.detach().float().std()) if p.numel() > 1 else 0.0
                spread = spread if np.isfinite(spread) and spread > 0 else 0.01
                p.copy_((torch.randn(p.shape, generator=g) * spread).to(dtype=p.dtype, device=p.device))
    return replace(loaded, module=module, identity=f"{loaded.identity}:randomised:{','.join(layers)}:{seed}", extra=dict(loaded.extra))


def model_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that shares no parameter, buffer or hook table with it (see the module docstring).

    Raises
    ------
    MethodError
        The module can be copied neither way.
    """
    try:
        return copy.deepcopy(module)
    except Exception as deep_err:  # noqa: BLE001 - e.g. an unflattened torch.export program
        try:
            return _module_by_module_copy(module, {})
        except Exception as err:  # noqa: BLE001 - reported with the first failure
            raise MethodError(
                f"The model cannot be copied for the randomisation test ({type(deep_err).__name__}: {str(deep_err).splitlines()[0]}; "
                f"module by module: {type(err).__name__}: {str(err).splitlines()[0]}).",
                "Evaluate without the sanity check (metrics without 'sanity'), or give the model as weights + spec.",
            ) from err


#: Per-module hook tables of ``nn.Module`` (attribute names ending so); a copy gets its own.
_HOOK_TABLE_SUFFIXES = ("_hooks", "_hooks_with_kwargs", "_hooks_always_called", "_pre_hooks")


def _module_by_module_copy(module: nn.Module, memo: dict[int, object]) -> nn.Module:
    """Copy the module tree: new module objects, cloned tensors (tied ones stay tied, via ``memo``), own hook tables."""
    if id(module) in memo:
        return memo[id(module)]  # type: ignore[return-value]
    if isinstance(module, torch.jit.ScriptModule):
        raise TypeError("a TorchScript module inside a module that cannot be deep-copied")
    new = copy.copy(module)
    memo[id(module)] = new
    for name, value in list(vars(module).items()):
        if name.endswith(_HOOK_TABLE_SUFFIXES) and isinstance(value, dict):
            setattr(new, name, type(value)(value))
    new._parameters = {k: None if p is None else _cloned(p, memo) for k, p in module._parameters.items()}
    new._buffers = {k: None if b is None else _cloned(b, memo) for k, b in module._buffers.items()}
    new._modules = {k: None if m is None else _module_by_module_copy(m, memo) for k, m in module._modules.items()}
    return new


def _cloned(t: torch.Tensor, memo: dict[int, object]) -> torch.Tensor:
    if id(t) not in memo:
        data = t.detach().clone()
        memo[id(t)] = nn.Parameter(data, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else data
    return memo[id(t)]  # type: ignore[return-value]
