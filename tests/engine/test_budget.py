"""Batch sizes from the time slice (``budget.py``): a pair while two samples fit the pair bound, never over memory."""

from __future__ import annotations

from napari_xai.engine.budget import PAIR_SECONDS, SLICE_SECONDS, BatchPlanner, batch_for_time


def test_a_batch_fills_the_slice_and_holds_two_samples_while_two_fit_the_pair_bound():
    assert batch_for_time(SLICE_SECONDS / 10) == 10
    assert batch_for_time(0.9 * PAIR_SECONDS / 2) == 2  # one sample fills the slice, two still fit the bound
    assert batch_for_time(1.1 * PAIR_SECONDS / 2) == 1
    assert batch_for_time(5.0) == 1


def test_the_planner_keeps_pairs_at_the_measured_cost_and_its_memory_cap():
    planner = BatchPlanner(1, 1, first_batch=1)
    planner._seconds_per_sample = 0.35  # as measured on a batch of one: over the slice, and a pair fits the bound
    assert planner.next_size(100) == 2
    capped = BatchPlanner(2**20, 1, first_batch=1)  # one sample fills the 1 MiB budget
    capped._seconds_per_sample = 0.01
    assert capped.next_size(100) == 1
    assert planner.next_size(1) == 1  # never more than what is left
