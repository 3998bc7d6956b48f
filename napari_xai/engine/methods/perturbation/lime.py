"""LIME: a locally weighted linear surrogate of the target score over supervoxels.

Ribeiro, Singh & Guestrin 2016 (review ref. [31]). The input is divided into
supervoxels (a regular grid or SLIC, see :mod:`._supervoxels`); random
coalitions switch supervoxels off (they take the reference image); a ridge
regression with intercept, weighted by an exponential kernel of each
coalition's distance to the unperturbed input, is fitted to the target
scores; a voxel's attribution is its supervoxel's coefficient.

Defaults are those of the authors' image explainer (``lime_image``):
coalitions drawn uniformly (each supervoxel on with probability 1/2) with the
first sample the unperturbed input (250 samples by default rather than
``lime_image``'s 1000, so that a 3D run stays interactive), cosine distance in the
binary interpretable space, kernel ``sqrt(exp(-d**2 / w**2))`` =
``exp(-d**2 / (2 w**2))`` (Captum's form) with width ``w = 0.25``, and
``Ridge(alpha=1)``. All supervoxels enter the model (no feature selection),
as in Captum's ``Lime``.

Hand-written because no library does it for volumes with bounded memory:
``lime_image`` is 2D RGB and Captum's ``Lime`` evaluates one blocking
``attribute`` call. Here perturbed volumes are built and run batch by batch
under the memory budget, with progress and cancel between batches; tests
check the result against Captum's ``Lime`` fed the same coalitions.
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np

from ...progress import Progress
from ...registry import MethodSpec, ParamSpec, register_method
from .surrogate import SUPERVOXEL_PARAMS, evaluate, paint, prepare
from ..toolkit.context import MethodContext
from ..toolkit.params import seed_param

DISTANCES = ("cosine", "hamming")


def lime_coalitions(n_features: int, n_samples: int, seed: int) -> np.ndarray:
    """Coalitions ``(n_samples, M)`` (bool): the first all on, the rest uniform on {0, 1}^M."""
    rng = np.random.default_rng(seed)
    z = rng.random((n_samples, n_features)) < 0.5
    z[0] = True
    return z


def lime_weights(coalitions: np.ndarray, distance: str, kernel_width: float) -> np.ndarray:
    """Exponential-kernel weights of coalitions, from their distance to the all-on vector.

    Cosine distance to the all-ones vector is ``1 - sqrt(k / M)`` for ``k``
    supervoxels on (1 for the empty coalition); Hamming distance is the
    fraction switched off.
    """
    m = coalitions.shape[1]
    k = coalitions.sum(axis=1).astype(np.float64)
    d = 1.0 - np.sqrt(k / m) if distance == "cosine" else (m - k) / m
    return np.exp(-(d**2) / (2.0 * kernel_width**2))


def weighted_ridge(z: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Ridge regression with an unpenalised intercept and sample weights (scikit-learn's ``Ridge``).

    Returns
    -------
    coef : numpy.ndarray
        ``(M,)`` coefficients.
    intercept : float
    """
    z = z.astype(np.float64)
    zm, ym = (w @ z) / w.sum(), float(w @ y) / float(w.sum())
    zc, yc = z - zm, y - ym
    # minimises sum_i w_i (y_i - b - z_i . coef)**2 + alpha |coef|**2 (raw weights, as scikit-learn)
    a = zc.T @ (zc * w[:, None]) + alpha * np.eye(z.shape[1])
    coef = np.linalg.lstsq(a, zc.T @ (w * yc), rcond=None)[0]
    return coef, ym - float(zm @ coef)


def _run(ctx: MethodContext, params: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    labels, ref, m = yield from prepare(ctx, params, "LIME")
    z = lime_coalitions(m, params["n_samples"], params["seed"])
    y = yield from evaluate(ctx, labels, ref, z, "LIME")
    w = lime_weights(z, params["distance"], params["kernel_width"])
    coef, intercept = weighted_ridge(z, y, w, params["ridge_alpha"])
    pred = intercept + z.astype(np.float64) @ coef
    ss_res = float(w @ (y - pred) ** 2)
    ss_tot = float(w @ (y - np.average(y, weights=w)) ** 2)
    ctx.checks["lime"] = {"supervoxels": m, "samples": len(z), "weighted_r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"), "intercept": intercept}
    return paint(coef, labels)


SPEC = register_method(
    MethodSpec(
        name="lime",
        title="LIME",
        family="perturbation",
        reference="Ribeiro MT, Singh S, Guestrin C. \"Why Should I Trust You?\": Explaining the Predictions of Any Classifier. KDD 2016 (review ref. [31]).",
        summary="Weighted linear surrogate over supervoxels switched on and off at random; model-agnostic, forward passes only.",
        needs=frozenset({"forward"}),
        sign="signed",
        params=SUPERVOXEL_PARAMS
        + (
            # 250, not lime_image's 1000: one forward pass each (1000 take ~2 minutes on the sample 3D model, 2-core CPU)
            ParamSpec("n_samples", int, 250, "Perturbed samples (lime_image: 1000); more gives a steadier map but costs one forward pass each.", min=10, max=1_000_000),
            ParamSpec("kernel_width", float, 0.25, "Width of the exponential kernel on the distance (lime_image's 0.25).", min=1e-3, max=100.0),
            ParamSpec("distance", str, "cosine", "Distance of a coalition to the unperturbed input, in the binary feature space.", choices=DISTANCES),
            ParamSpec("ridge_alpha", float, 1.0, "L2 penalty of the ridge surrogate (lime's Ridge(alpha=1)).", min=0.0, max=1e6),
            seed_param("the random coalitions"),
        ),
        run=_run,
        stochastic=True,
    )
)
