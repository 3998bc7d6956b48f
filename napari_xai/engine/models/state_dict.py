"""Putting a state dict into a network built from a config, with a message that says what does not fit."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from ..errors import ModelError


def load_state_strict(network: nn.Module, state: Mapping[str, torch.Tensor], problem: str, fix: str) -> None:
    """``network.load_state_dict(state, strict=True)``, a mismatch raised as :class:`ModelError`.

    ``problem`` starts the message (e.g. "The weights in model.pt do not fit
    the bundle's network_def"); the first lines of torch's report follow it.
    """
    try:
        network.load_state_dict(dict(state), strict=True)
    except RuntimeError as err:
        lines = str(err).splitlines()
        detail = " ".join(line.strip() for line in lines[1:3])
        raise ModelError(f"{problem}: {lines[0]} {detail}", fix) from err
