"""Activation checkpointing for networks that see the whole volume: the same maps, picked by the budget, or a refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from napari_xai.engine import MemoryBudgetError, explain
from napari_xai.engine.checkpointing import checkpointed, plan_checkpointing

SHAPE = (24, 24, 24)
BLOCKS = 12  # enough that the plain pass keeps more than the checkpointed estimate


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv3d(channels, channels, 3, padding=1), nn.Tanh()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Net(nn.Module):
    """A whole-volume classifier with skip connections and blocks held in a ModuleList (never called itself)."""

    def __init__(self, blocks: int = BLOCKS) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv3d(1, 8, 3, padding=1)
        self.blocks = nn.ModuleList(Residual(8) for _ in range(blocks))
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        for block in self.blocks:
            h = block(h)
        return self.head(h.mean(dim=(2, 3, 4)))


@pytest.fixture(scope="module")
def case():
    net = Net().eval()
    vol = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    return net, vol


def test_checkpointed_copy_shares_weights_and_gives_the_same_gradient(case):
    net, vol = case
    x = torch.from_numpy(vol)[None, None]
    plan = plan_checkpointing(net, x, 10**12, 3)
    assert plan.segments == ["stem", *(f"blocks.{i}" for i in range(BLOCKS)), "head"]
    clone = checkpointed(net, plan.segments)
    assert clone.stem.weight is net.stem.weight  # no weights copied
    assert "forward" not in vars(net.blocks[0])  # the model itself is unchanged
    grads = []
    for module in (net, clone):
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(module(xg)[0, 1], xg)
        grads.append(g)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-8)


def test_a_tight_budget_splits_the_largest_segment():
    net = Net(blocks=1).eval()
    x = torch.zeros((1, 1) + SHAPE)
    loose = plan_checkpointing(net, x, 10**12, 3)
    tight = plan_checkpointing(net, x, loose.peak_bytes - 1, 3)
    assert "blocks.0.body" in tight.segments or "blocks.0.body.0" in tight.segments
    assert tight.peak_bytes < loose.peak_bytes


@pytest.mark.parametrize("method, params", [("vanilla_gradient", {}), ("integrated_gradients", {"steps": 4})])
def test_the_budget_picks_checkpointing_and_the_map_is_unchanged(case, method, params):
    """Plain: a budget every pass fits. Checkpointed: one the plain pass does not fit (stopped, or planned out)."""
    net, vol = case
    x = torch.from_numpy(vol)[None, None]
    plan = plan_checkpointing(net, x, 10**12, 3)
    budget = -(-(plan.peak_bytes + 2 * x.numel() * 4) // 2**20) + 2  # fits checkpointed, not plain (the plan's numbers)
    assert plan.plain_bytes // 2**20 > budget
    plain = explain(net, vol, method, 1, memory_budget_mb=4096, **params)
    small = explain(net, vol, method, 1, memory_budget_mb=budget, **params)
    assert "checkpointing" not in plain.checks
    assert small.checks["checkpointing"]["segments"] == BLOCKS + 2
    assert float(np.abs(plain.values).max()) > 0
    # float tolerance: the checkpointed run also batches the integration steps differently
    np.testing.assert_allclose(small.values, plain.values, rtol=1e-4, atol=1e-4 * float(np.abs(plain.values).max()))


def test_over_the_budget_even_checkpointed_refuses_before_allocating(case):
    net, vol = case
    with pytest.raises(MemoryBudgetError, match="activation checkpointing") as err:
        explain(net, vol, "integrated_gradients", 1, memory_budget_mb=1, steps=4)
    assert "memory_budget_mb=" in err.value.fix


def test_the_estimate_counts_on_checkpointing(case):
    from napari_xai.engine import estimate

    net, vol = case
    x = torch.from_numpy(vol)[None, None]
    plan = plan_checkpointing(net, x, 10**12, 3)
    budget = -(-(plan.peak_bytes + 2 * x.numel() * 4) // 2**20) + 2
    fits = estimate(net, vol, "integrated_gradients", 1, memory_budget_mb=budget, steps=4)
    assert fits.fits and fits.peak_mb <= budget + fits.model_mb + 1
    assert not estimate(net, vol, "integrated_gradients", 1, memory_budget_mb=1, steps=4).fits
