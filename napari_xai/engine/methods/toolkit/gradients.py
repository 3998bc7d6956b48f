"""Gradients with the checks every gradient method needs.

A model can hide its output from autograd (``torch.no_grad`` inside
``forward``, ``detach``, an argmax or a threshold); a gradient taken through
it is then missing or meaningless. Every gradient a method takes goes through
:func:`checked_grad`, which turns that into one :class:`MethodError` with a
fix, instead of a raw autograd traceback or a silent map of zeros.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ...errors import MethodError


def not_differentiable() -> MethodError:
    """The error for a score that does not depend differentiably on what it is differentiated by."""
    return MethodError(
        "The model's output does not depend differentiably on its input (it may run under torch.no_grad, "
        "detach tensors, or threshold/argmax its output), so gradient methods cannot be applied.",
        "Return raw logits from a differentiable forward, or use a perturbation method such as occlusion.",
    )


def checked_grad(
    output: torch.Tensor,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    grad_outputs: torch.Tensor | None = None,
    retain_graph: bool = False,
) -> tuple[torch.Tensor, ...]:
    """``torch.autograd.grad(output, inputs, grad_outputs)``, detached, refusing a non-differentiable output.

    Call it inside grad mode. Gradients are taken with ``autograd.grad`` (never
    ``backward``), so no ``.grad`` field of the model is touched.

    Parameters
    ----------
    output : torch.Tensor
        What is differentiated (a scalar, or any shape with ``grad_outputs``).
    inputs : torch.Tensor or sequence of torch.Tensor
        Leaves (or intermediate tensors) the gradient is taken for.
    grad_outputs : torch.Tensor, optional
        The vector of a vector-Jacobian product (e.g. LRP's output relevance).
    retain_graph : bool
        Keep the graph for a second gradient through it.

    Returns
    -------
    tuple of torch.Tensor
        One gradient per input.

    Raises
    ------
    MethodError
        ``output`` does not require grad, or does not depend on an input.
    """
    if not output.requires_grad:
        raise not_differentiable()
    grads = torch.autograd.grad(output, inputs, grad_outputs, retain_graph=retain_graph, allow_unused=True)
    if any(g is None for g in grads):
        raise not_differentiable()
    return tuple(g.detach() for g in grads)


def input_gradient(
    forward: Callable[[torch.Tensor], torch.Tensor],
    score: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    copy_input: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of ``score(forward(x))`` summed over the batch w.r.t. each input of ``x``, and the scores.

    Grad mode is on only inside this call (never across a method's ``yield``).

    Parameters
    ----------
    forward : callable
        The network (the model, or a private copy with rule hooks).
        ``x`` itself is never modified.
    score : callable
        Model output ``->`` one score per sample ``(N,)`` (the run's target).
    x : torch.Tensor
        A batch ``(N, C, *spatial)``.
    copy_input : bool
        Differentiate a copy of ``x`` rather than a detached view of it (for
        forwards that may write into their input).

    Returns
    -------
    gradient, scores : torch.Tensor
        ``(N, C, *spatial)`` and ``(N,)``, both detached.

    Raises
    ------
    MethodError
        The score does not depend differentiably on the input.
    """
    with torch.enable_grad():
        leaf, s = scored_leaf(forward, score, x, copy_input)
        (grad,) = checked_grad(s.sum(), leaf)
    return grad, s.detach()


def scored_leaf(
    forward: Callable[[torch.Tensor], torch.Tensor],
    score: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    copy_input: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A leaf of ``x`` that requires grad and its scores ``score(forward(leaf))``, ready for :func:`checked_grad`.

    The first half of :func:`input_gradient`, for a method that must do
    something between the forward pass and its backward pass (DeepLIFT
    yields an event there). Call it inside grad mode.

    Parameters
    ----------
    forward, score, x, copy_input
        As for :func:`input_gradient`.

    Returns
    -------
    leaf, scores : torch.Tensor
        ``(N, C, *spatial)`` requiring grad, and ``(N,)`` still in the graph.
    """
    leaf = x.detach().clone() if copy_input else x.detach()  # detach shares storage: no copy of x
    leaf.requires_grad_(True)
    return leaf, score(forward(leaf))
