"""A loaded model with its spec and provenance, and the identity of its weights.

Every loader (``loading``, ``monai_bundle``, ``nnunet``) returns a
:class:`LoadedModel`; this module imports none of them.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import ModelError
from .spec import ModelSpec


@dataclass
class LoadedModel:
    """A model ready to explain, with its spec and provenance.

    Parameters
    ----------
    module : torch.nn.Module
        The callable model (for ``torch.export`` archives, the unflattened
        module, which keeps the layer hierarchy and takes forward hooks).
    spec : ModelSpec
        What the model expects.
    kind : str
        One of ``module``, ``torchscript``, ``export``, ``weights``, ``pickle``,
        ``monai_bundle``, ``nnunet``.
    source : str
        File path, or ``<in-process ClassName>``.
    identity : str
        SHA-256 of the weights (names and bytes), so two runs can tell
        whether they explained the same model.
    max_batch : int or None
        Largest batch the model takes (set to 1 for archives exported with a
        static batch of one); None when unknown/unbounded.
    extra : dict
        What a folder format's loader read (nnU-Net's folds and trainer, a
        MONAI bundle's config), for provenance.
    """

    module: nn.Module
    spec: ModelSpec
    kind: str
    source: str
    identity: str
    max_batch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The spec's name, else the file or class name."""
        return self.spec.name or Path(self.source.strip("<>")).name

    @property
    def takes_hooks(self) -> bool:
        """Whether forward hooks on submodules work (not for TorchScript)."""
        return self.kind != "torchscript"

    def get_layer(self, name: str) -> nn.Module:
        """The submodule called ``name``, for CAM methods.

        Raises
        ------
        ModelError
            TorchScript model (takes no hooks) or no such layer.
        """
        if not self.takes_hooks:
            raise ModelError(
                "This model is TorchScript: a loaded TorchScript module takes no forward hooks, "
                "so layer methods (CAM family) cannot read its activations.",
                "Export the model with torch.export (a .pt2 archive) or give its weights plus a spec, "
                "or use a gradient or perturbation method.",
            )
        try:
            return self.module.get_submodule(name)
        except AttributeError:
            names = [n for n, _ in self.module.named_modules() if n][-12:]
            raise ModelError(
                f"The model has no layer called {name!r}.",
                f"Name one of its layers, e.g. {names}.",
            ) from None


#: module -> (state key, digest): hashing a large network's weights on every run costs
#: a tenth of a second or more, while the key below costs microseconds.
_IDENTITY_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]]" = weakref.WeakKeyDictionary()
_IDENTITY_LOCK = threading.Lock()


def weights_key(module: nn.Module) -> tuple:
    """A cheap key that changes whenever a weight of ``module`` changes (see :func:`weights_identity`)."""
    return _state_key(module.state_dict(keep_vars=True))


def _state_key(state: dict[str, Any]) -> tuple:
    def probe(v: torch.Tensor) -> tuple:
        if not v.numel():
            return ()
        if v.device.type == "cpu" and v.dtype != torch.bfloat16 and not v.is_quantized:
            # numpy scalars: a fifth of the time of indexing the tensor (a run on a raw module keys its weights each time)
            flat = v.detach().numpy().ravel()
            return (flat[0], flat[flat.shape[0] // 2], flat[-1])
        flat = v.detach().reshape(-1)
        return tuple(flat[[0, flat.numel() // 2, -1]].tolist())

    return tuple(
        (k, v.data_ptr(), tuple(v.shape), v._version, str(v.dtype), probe(v)) if isinstance(v, torch.Tensor) else (k, repr(v))
        for k, v in state.items()
    )


def weights_identity(module: nn.Module) -> str:
    """SHA-256 (hex) over the module's state dict names and tensor bytes.

    Cached per module; the cache is keyed by each tensor's name, storage,
    shape, version counter (which every in-place change, e.g. an optimiser
    step or ``load_state_dict``, increments) and first, middle and last
    values (an edit through ``.data`` bypasses the version counter), so a
    changed weight is hashed again.
    """
    state = module.state_dict(keep_vars=True)
    key = _state_key(state)
    try:
        with _IDENTITY_LOCK:
            hit = _IDENTITY_CACHE.get(module)
    except TypeError:  # a module that cannot be weakly referenced
        hit = None
    if hit is not None and hit[0] == key:
        return hit[1]
    digest = hashlib.sha256()
    for k, value in state.items():
        digest.update(k.encode())
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    out = digest.hexdigest()
    try:
        with _IDENTITY_LOCK:
            _IDENTITY_CACHE[module] = (key, out)
    except TypeError:
        pass
    return out
