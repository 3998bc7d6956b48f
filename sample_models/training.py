"""What the sample models' training scripts share: the optimiser loop, its loss report, and writing the weights with their spec."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn as nn
from safetensors.torch import save_file

from napari_xai.engine.models.spec import ModelSpec


def optimise(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_of: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    sched: Any = None,
) -> Iterator[tuple[float, int]]:
    """One optimiser step per batch ``(x, y)`` in training mode; yields each step's loss and batch size."""
    for xb, yb in batches:
        model.train()
        opt.zero_grad()
        loss = loss_of(model, xb, yb)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        yield float(loss.detach()), len(xb)


def report_every(losses: Iterable[tuple[float, int]], every: int, t0: float) -> None:
    """Run the steps, printing the mean loss of every ``every`` steps."""
    running = 0.0
    for step, (loss, _) in enumerate(losses, start=1):
        running += loss
        if step % every == 0:
            print(f"step {step}: loss {running / every:.4f} ({time.time() - t0:.0f} s)", flush=True)
            running = 0.0


def write_model(model: nn.Module, out: Path, **spec: Any) -> Path:
    """Write the weights beside the spec ``out`` (``.safetensors``) and the spec naming them; returns the weights' path."""
    weights = out.with_suffix(".safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    ModelSpec(**spec, weights=weights.name).write(out)
    return weights
