"""KernelSHAP: Shapley values of supervoxels, estimated by a Shapley-kernel-weighted linear regression.

Lundberg & Lee 2017 (review ref. [37]). The players are supervoxels (a
regular grid or SLIC, see :mod:`._supervoxels`); a coalition keeps its
supervoxels and replaces the rest by the reference image. The Shapley values
are the solution of the weighted least-squares problem with the Shapley
kernel ``pi(k) = (M - 1) / (C(M, k) k (M - k))`` under the efficiency
constraint ``sum(phi) = f(x) - f(reference)``.

* When all ``2**M`` coalitions fit in ``n_samples`` they are enumerated with
  their exact kernel weights, and the result *is* the exact Shapley values.
* Otherwise coalitions are sampled as Captum's ``KernelShap`` does: the size
  ``k`` from ``p(k) ~ (M - 1) / (k (M - k))`` and then a uniform subset of that
  size (which makes the kernel weights equal), after the full and the empty
  coalition. Instead of Captum's large weight (1e6) on those two, the
  efficiency constraint is imposed exactly by eliminating one coefficient
  (as the ``shap`` package does).

Hand-written because no library does it for volumes with bounded memory
(``shap`` and Captum evaluate the perturbed inputs in one blocking call).
Perturbed volumes are run batch by batch under the memory budget, with
progress and cancel between batches; tests compare with exact Shapley values
by enumeration and with Captum's ``KernelShap`` fed the same coalitions.
"""

from __future__ import annotations

import math
from typing import Any, Generator

import numpy as np

from ...progress import Progress
from ...registry import MethodSpec, ParamSpec, register_method
from .surrogate import SUPERVOXEL_PARAMS, evaluate, paint, prepare
from ..toolkit.context import MethodContext
from ..toolkit.params import seed_param


def auto_samples(n_features: int) -> int:
    """``4 M + 64`` coalitions (the ``shap`` package's ``2 M + 2048`` costs ~4 minutes on the sample 3D model)."""
    return 4 * n_features + 64


#: Coalitions drawn between two progress events while sampling them.
COALITION_CHUNK = 20_000


def shap_coalitions(n_features: int, n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Coalitions ``(n, M)`` (bool), their regression weights, and whether they are all ``2**M``.

    Row 0 is the full coalition and row 1 the empty one (the constraint's
    end points, weight 0 in the regression).
    """
    gen = shap_coalitions_iter(n_features, n_samples, seed)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def shap_coalitions_iter(n_features: int, n_samples: int, seed: int) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray, bool]]:
    """:func:`shap_coalitions` as a generator with a progress event every :data:`COALITION_CHUNK` coalitions."""
    m = n_features
    if m < 31 and 2**m <= n_samples:
        # every proper, non-empty subset as the bits of 1 .. 2**m - 2, ordered by size
        codes = np.arange(1, 2**m - 1, dtype=np.int64)
        bits = ((codes[:, None] >> np.arange(m)) & 1).astype(bool)
        bits = bits[np.argsort(bits.sum(axis=1), kind="stable")]
        k = bits.sum(axis=1)
        w = (m - 1) / (np.array([math.comb(m, int(i)) for i in range(m + 1)], dtype=np.float64)[k] * k * (m - k))
        yield Progress(len(bits), len(bits), f"KernelSHAP: all {2**m} coalitions")
        return np.concatenate([np.ones((1, m), bool), np.zeros((1, m), bool), bits]), np.concatenate([[0.0, 0.0], w]), True
    rng = np.random.default_rng(seed)
    n = max(n_samples, 3)
    sizes = np.arange(1, m)
    p = (m - 1) / (sizes * (m - sizes))
    k = rng.choice(sizes, size=n - 2, p=p / p.sum())
    z = np.zeros((n, m), bool)
    z[0] = True
    # a uniform random subset of size k per row: the k smallest of m uniform draws (drawn in
    # chunks of rows, which consumes the generator exactly as one draw of all rows would)
    for lo in range(0, n - 2, COALITION_CHUNK):
        hi = min(n - 2, lo + COALITION_CHUNK)
        order = rng.random((hi - lo, m)).argsort(axis=1)
        on = np.arange(m)[None, :] < k[lo:hi, None]
        np.put_along_axis(z[2 + lo : 2 + hi], order, on, axis=1)
        yield Progress(hi, n - 2, f"KernelSHAP: drawing coalitions {hi}/{n - 2}")
    w = np.concatenate([[0.0, 0.0], np.ones(n - 2)])
    return z, w, False


def constrained_shapley_fit(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least squares ``y ~ phi0 + z . phi`` with ``phi0 = y[1]`` and ``sum(phi) = y[0] - y[1]``.

    Rows 0 and 1 are the full and the empty coalition. The last coefficient is
    eliminated: ``phi_M = total - sum(phi_<M)``.
    """
    z = z.astype(np.float64)
    f1, f0 = float(y[0]), float(y[1])
    total = f1 - f0
    m = z.shape[1]
    if m == 1:
        return np.array([total])
    rows = w > 0
    a = z[rows, :-1] - z[rows, -1:]
    t = y[rows] - f0 - z[rows, -1] * total
    sw = np.sqrt(w[rows])[:, None]
    head = np.linalg.lstsq(a * sw, t * sw[:, 0], rcond=None)[0]
    return np.concatenate([head, [total - head.sum()]])


def _run(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    labels, ref, m = yield from prepare(ctx, params, "KernelSHAP")
    n = params["n_samples"] or auto_samples(m)
    z, w, exact = yield from shap_coalitions_iter(m, n, params["seed"])
    y = yield from evaluate(ctx, labels, ref, z, "KernelSHAP")
    phi = constrained_shapley_fit(z, y, w)
    ctx.checks["kernel_shap"] = {
        "supervoxels": m,
        "samples": len(z),
        "exact_enumeration": exact,
        "f_x": float(y[0]),
        "f_reference": float(y[1]),
        "sum_phi": float(phi.sum()),
    }
    return paint(phi, labels)


SPEC = register_method(
    MethodSpec(
        name="kernel_shap",
        title="KernelSHAP",
        family="perturbation",
        reference="Lundberg SM, Lee S-I. A Unified Approach to Interpreting Model Predictions. NeurIPS 2017 (review ref. [37]).",
        summary="Shapley values of supervoxels by Shapley-kernel regression; sums to f(x) - f(reference); forward passes only.",
        needs=frozenset({"forward"}),
        sign="signed",
        params=SUPERVOXEL_PARAMS
        + (
            ParamSpec("n_samples", int, 0, "Coalitions evaluated; 0: 4M + 64 (shap's default 2M + 2048 is slow in 3D); all 2**M (exact) when that fits.", min=0, max=1_000_000),
            seed_param("the sampled coalitions"),
        ),
        run=_run,
        stochastic=True,
    )
)
