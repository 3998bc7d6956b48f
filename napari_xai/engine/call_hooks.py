"""Forward hooks that act only on the run that registered them.

The napari and Slicer hosts run two jobs on one model at once (a prediction
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

import torch.nn as nn

Hook = Callable[[nn.Module, Any, Any], Any]


@contextlib.contextmanager
def run_local_forward_hooks(pairs: Iterable[tuple[nn.Module, Hook]]) -> Iterator[None]:
    """Register ``hook`` on each ``module`` for the block, acting only in the calling thread; removed on exit.

    Parameters
    ----------
    pairs : iterable of (module, hook)
        ``hook(module, inputs, output)`` as for ``register_forward_hook``; a
        non-None return value replaces the output (in this thread only).

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
            handles.append(module.register_forward_hook(gated(hook)))
        yield
    finally:
        for handle in handles:
            handle.remove()


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
