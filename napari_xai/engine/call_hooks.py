"""Forward hooks for one block, and hooks that act only on the run that registered them.

Every forward hook the engine sets goes through :func:`forward_hooks`, which
removes it when the block ends. The napari and Slicer hosts run two jobs on one model at once (a prediction
and a method, or two methods). A forward hook lives on the shared module, so
a plain hook would see, record or replace the outputs of the other job's
forward passes too. Hooks registered here act only in the thread that
registered them and do nothing in any other, so each run's passes are the
same as if it ran alone. (A run keeps its hooks inside one batch and never
across a ``yield``, so no other code runs in that thread while they are on.)
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn as nn

Hook = Callable[[nn.Module, Any, Any], Any]


@contextlib.contextmanager
def forward_hooks(pairs: Iterable[tuple[nn.Module, Hook]], this_thread_only: bool = False) -> Iterator[None]:
    """Register ``hook`` on each ``module`` for the block; every hook is removed on exit.

    The one place the engine registers forward hooks: every method, the
    budget's activation probe and the CAM layer search use it, so a hook can
    never outlive its block.

    Parameters
    ----------
    pairs : iterable of (module, hook)
        ``hook(module, inputs, output)`` as for ``register_forward_hook``; a
        non-None return value replaces the output.
    this_thread_only : bool
        The hooks act only in the calling thread (for hooks on the user's
        shared module, see the module docstring); False for hooks on a
        private copy of the model.

    Raises
    ------
    RuntimeError or AttributeError
        From ``register_forward_hook`` (TorchScript modules take no hooks);
        hooks registered before the failure are removed.
    """
    owner = threading.get_ident()

    def gated(hook: Hook) -> Hook:
        def run(module: nn.Module, inputs: Any, output: Any) -> Any:
            if threading.get_ident() != owner:
                return None
            return hook(module, inputs, output)

        return run

    handles = []
    try:
        for module, hook in pairs:
            handles.append(module.register_forward_hook(gated(hook) if this_thread_only else hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def run_local_forward_hooks(pairs: Iterable[tuple[nn.Module, Hook]]) -> contextlib.AbstractContextManager[None]:
    """:func:`forward_hooks` acting only in the calling thread (hooks on the user's shared module)."""
    return forward_hooks(pairs, this_thread_only=True)


def tensor_output_hook(replace: Callable[[nn.Module, torch.Tensor, torch.Tensor], Any]) -> Hook:
    """A hook whose layer output becomes ``replace(layer, input, output)``, for layers with a tensor input and output.

    Other layers are left alone, and ``replace`` returning None keeps the output.
    """

    def hook(layer: nn.Module, inputs: tuple[Any, ...], output: Any) -> Any:
        if not inputs or not isinstance(inputs[0], torch.Tensor) or not isinstance(output, torch.Tensor):
            return None
        return replace(layer, inputs[0], output)

    return hook


def output_hooks(module: nn.Module, kinds: tuple[type, ...], replace: Callable[[nn.Module, torch.Tensor, torch.Tensor], Any]) -> contextlib.AbstractContextManager[None]:
    """:func:`tensor_output_hook` ``(replace)`` on every submodule of ``kinds`` of ``module`` (a private copy); removed on exit."""
    hook = tensor_output_hook(replace)
    return forward_hooks([(m, hook) for m in module.modules() if isinstance(m, kinds)])


_EVAL_LOCK = threading.Lock()
_EVAL_USERS: dict[int, list] = {}


@contextlib.contextmanager
def shared_eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for the block; the caller's mode comes back when the last of several concurrent runs leaves.

    A model already in eval mode (every loaded model) is left alone; one in
    training mode is switched to eval by the first run and back by the last,
    so one run finishing never puts the model back in training mode under
    another that is still running.
    """
    key = id(module)
    with _EVAL_LOCK:
        entry = _EVAL_USERS.get(key)
        if entry is None:
            entry = _EVAL_USERS[key] = [module.training, 0]
            if module.training:
                module.eval()
        entry[1] += 1
    try:
        yield
    finally:
        with _EVAL_LOCK:
            entry[1] -= 1
            if entry[1] == 0:
                del _EVAL_USERS[key]
                if entry[0]:
                    module.train(True)
