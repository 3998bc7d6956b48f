"""Completeness error of integrated gradients' quadrature rules against Captum's default, on the sample models and DenseNet-121.

    python benchmarks/bench_ig_rules.py [--threads 2] [--inputs 3] [--steps 25] [--only NAME ...] [--rules RULE ...]

For each model and input, Captum ``IntegratedGradients`` (``method="gausslegendre"``,
``n_steps=50``, baseline zeros: its default rule at 50 steps) gives the
reference error; napari-xai's rules run with ``--steps`` gradient steps on the
same model-space input, target and baseline. The error is the completeness
residual |sum(attribution) - (f(x) - f(baseline))| relative to
|f(x) - f(baseline)|, which for a straight path is exactly the quadrature
error of the one-dimensional integral of d f(path(alpha)) / d alpha.
Inputs: the sample scan, then copies with Gaussian noise of 0.1 x the
scan's standard deviation in model space (seeds 1, 2, ...), since one
input's residual is a sum of many jump errors of either sign and says
little alone. Not a timing benchmark (no lock needed).

Also a candidate adaptive rule, evaluated from the path's scalars (the
residual needs only f and d f / d alpha at the nodes): non-uniform steps
after Bhat A, Raychowdhury A, "Non-Uniform Interpolation in Integrated
Gradients for Low-Latency Explainable-AI", IEEE ISCAS 2023: forward-only
passes at the 13 edges of 12 equal intervals, then the gradient steps
shared out in proportion to |f| 's change over each interval (at least one
each), the midpoint rule inside each interval (a valid composite rule of
the path integral). Its cost is 25 gradient steps plus 11 forward-only
passes (the two ends are passes IG needs anyway).

Cases: the sample 3D lesion classifier (class 1), the 2D classifier
(class 1), the 3D segmenter (class 1 over its predicted lesion region, the
logits summed), and MONAI DenseNet-121 3D at 64^3 with seeded random weights
on a seeded random input (class 1).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

RULES = ("gausslegendre", "riemann_middle", "riemann_trapezoid")


def cases():
    from napari_xai.engine.model_space import to_model_space
    from napari_xai.samples import load_lesion_classifier, load_lesion_classifier_2d, load_lesion_segmenter, load_sample_scan, load_sample_scan_axial

    def sample(load_model, load_scan, region: bool):
        model = load_model()
        x = to_model_space(load_scan(), model.spec).tensor
        net = model.module.eval()
        mask = None
        if region:
            with torch.no_grad():
                mask = (net(x).argmax(1)[0] == 1).numpy()
        return net, x, mask

    def densenet():
        from monai.networks.nets import DenseNet121

        torch.manual_seed(0)
        net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
        return net, torch.from_numpy(np.random.default_rng(2).normal(size=(1, 1, 64, 64, 64)).astype(np.float32)), None

    return {
        "classifier_3d": lambda: sample(load_lesion_classifier, load_sample_scan, False),
        "classifier_2d": lambda: sample(load_lesion_classifier_2d, load_sample_scan_axial, False),
        "segmenter_3d_region": lambda: sample(load_lesion_segmenter, load_sample_scan, True),
        "densenet121_3d": densenet,
    }


def errors(net, x: torch.Tensor, mask, steps: int, rules=RULES) -> dict[str, float]:
    from captum.attr import IntegratedGradients

    from napari_xai.engine import explain

    if mask is None:
        def forward(t):
            return net(t)[:, 1]
    else:
        m = torch.from_numpy(mask)

        def forward(t):
            return (net(t)[:, 1] * m).flatten(1).sum(1)

    with torch.no_grad():
        diff = float(forward(x)[0] - forward(torch.zeros_like(x))[0])
    _, delta = IntegratedGradients(forward).attribute(x, baselines=0.0, n_steps=50, method="gausslegendre", internal_batch_size=8, return_convergence_delta=True)
    out = {"Captum GL-50": abs(float(delta[0])) / abs(diff)}
    out[f"stratified |df| (12 intervals)-{steps}"] = stratified(forward, x, steps, 12, diff)
    image = x[0, 0].numpy()
    for rule in rules:
        kw = {"region": mask} if mask is not None else {}
        a = explain(net, image, "integrated_gradients", target=1, steps=steps, rule=rule, **kw)
        out[f"{rule}-{steps}"] = a.checks["completeness"]["relative_delta"]
    return out


def stratified(forward, x: torch.Tensor, steps: int, intervals: int, diff: float) -> float:
    """Relative completeness residual of the stratified non-uniform rule (see the module docstring)."""
    edges = np.linspace(0.0, 1.0, intervals + 1)
    with torch.inference_mode():
        f = forward(torch.from_numpy(edges.astype(np.float32)).view(-1, *([1] * (x.ndim - 1))) * x).double().numpy()
    change = np.abs(np.diff(f))
    share = change / max(change.sum(), 1e-30) * (steps - intervals)
    alloc = 1 + np.floor(share).astype(int)
    for k in np.argsort(-(share - np.floor(share)))[: steps - int(alloc.sum())]:
        alloc[k] += 1
    nodes = np.concatenate([lo + (hi - lo) * (np.arange(n) + 0.5) / n for lo, hi, n in zip(edges[:-1], edges[1:], alloc)])
    weights = np.concatenate([np.full(n, (hi - lo) / n) for lo, hi, n in zip(edges[:-1], edges[1:], alloc)])
    total = 0.0
    for i in range(0, len(nodes), 8):
        a = torch.from_numpy(nodes[i : i + 8].astype(np.float32)).view(-1, *([1] * (x.ndim - 1)))
        xg = (a * x).requires_grad_(True)
        (g,) = torch.autograd.grad(forward(xg).sum(), xg)
        total += float(((g * x).flatten(1).sum(1).double() * torch.from_numpy(weights[i : i + 8])).sum())
    return abs(total - diff) / abs(diff)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inputs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--only", nargs="+")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, make in cases().items():
        if args.only and name not in args.only:
            continue
        net, x0, mask = make()
        rows = []
        for i in range(args.inputs):
            noise = np.random.default_rng(i).normal(size=x0.shape).astype(np.float32) if i else np.zeros(x0.shape, np.float32)
            x = x0 + 0.1 * float(x0.std()) * torch.from_numpy(noise)
            r = errors(net, x, mask, args.steps, args.rules)
            rows.append(r)
            print(f"{name:20s} input {i}: " + "  ".join(f"{k} {v:.2e}" for k, v in r.items()), flush=True)
        keys = list(rows[0])
        med = {k: float(np.median([r[k] for r in rows])) for k in keys}
        wins = {k: sum(r[k] <= r["Captum GL-50"] for r in rows) for k in keys}
        print(f"{name:20s} median over {len(rows)}: " + "  ".join(f"{k} {med[k]:.2e} (<= GL-50 on {wins[k]}/{len(rows)})" for k in keys), flush=True)


if __name__ == "__main__":
    main()
