"""Exact incremental inference for patch perturbations (occlusion).

Nakandala S, Nagrecha K, Kumar A, Papakonstantinou Y. Incremental and
Approximate Computations for Accelerating Deep CNN Inference. ACM
Transactions on Database Systems 45(4), 2020 (the Krypton system). Occluding
a box of the input changes each layer's output only inside the box's
receptive field at that layer; everything else equals the unoccluded pass.
So the unoccluded pass is recorded once with every intermediate value, and
each occluded input is replayed by recomputing, layer by layer, only the
changed box (plus the halo a window needs), read from the cached values
with the changed part overlaid.

How the network is seen: the model's own forward runs once on the scan under
a :class:`torch.overrides.TorchFunctionMode` that records every torch call
whose inputs derive from the scan (a *tape*). The mode is thread-local and
neither patches classes nor hooks modules, so other threads and the model
are untouched (``torch.fx`` tracing patches ``nn.Module.__call__`` for every
thread while it runs). Replay covers, on a box:

- convolutions (zero padding, any stride, dilation, groups), max pooling
  (any padding, ceil mode) and average pooling (padding counted, or no
  padding), computed with the op's own arithmetic on a crop padded the way
  the op pads;
- per-voxel ops: activations, BatchNorm in eval mode, dropout in eval mode,
  element-wise arithmetic (with per-channel or broadcast operands), channel
  slicing, and concatenation along channels.

Any other op (global pooling, flatten, linear layers, interpolation,
instance norm, ...) runs in full on the patched values, batched when its
result has the batch layout and else sample by sample, and is listed in the
provenance. A box that grows to cover the whole feature map continues as an
ordinary batched pass. The result equals the full recomputation up to float
rounding (tests compare with Captum's ``Occlusion``); the occlusion method
also checks a few windows against full passes on every run.

A model whose forward reads values of its input (``.item()``, a Python
``if`` on a tensor) may branch differently on an occluded input, so it is
not replayed; nor is one whose output does not derive from the input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

Box = tuple[tuple[int, int], ...]  # per spatial axis: [start, stop)


@dataclass(frozen=True)
class Ref:
    """A value of the tape: ``node`` (-1: the input), ``item`` for one element of a tuple output."""

    node: int
    item: int | None = None


@dataclass
class Node:
    func: Callable
    args: tuple
    kwargs: dict
    base: Any  # the output on the unoccluded input (tensor, or tuple of tensors)


@dataclass
class Patch:
    """A value that equals the cached one outside ``boxes``: ``crop[b]`` holds sample b's box."""

    boxes: list[Box]
    crop: torch.Tensor


@dataclass
class Batched:
    """A value computed in full, batch-first ``(B, *base.shape[1:])``."""

    value: torch.Tensor


@dataclass
class PerSample:
    """A value computed sample by sample (its batch layout is not known)."""

    values: list[Any]


def _name(func: Callable) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def _tensor_funcs(*names: str) -> set:
    out = set()
    for n in names:
        for owner in (torch, torch.Tensor, F):
            f = getattr(owner, n, None)
            if f is not None:
                out.add(f)
    return out


#: Calls that give shapes or metadata, not values: a forward may use them freely.
SHAPE_QUERIES = {"dim", "size", "numel", "__len__", "is_contiguous", "is_floating_point", "element_size", "stride", "get_device", "__get__"}
_VALUE_PROPERTIES = {"data", "real", "imag", "T", "mT", "H", "mH", "grad"}

#: Per-voxel ops: the output at a voxel depends only on the inputs at that voxel (channels may mix per voxel).
POINTWISE = _tensor_funcs(
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "hardtanh", "hardswish",
    "hardsigmoid", "softplus", "sigmoid", "tanh", "prelu", "rrelu", "threshold",
    "add", "sub", "mul", "div", "true_divide", "neg", "abs", "exp", "square", "sqrt", "clamp", "clip", "pow",
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__neg__", "__pos__",
    "clone", "contiguous", "float", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "relu_", "sigmoid_", "tanh_", "add_", "sub_", "mul_", "div_", "clamp_", "__iadd__", "__isub__", "__imul__", "__itruediv__",
    "leaky_relu_", "elu_", "hardtanh_", "threshold_", "selu_", "celu_",
)
_DROPOUTS = _tensor_funcs("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")
#: 3D convolutions of replayed crops run on a channels-last copy of the crop: oneDNN convolves small crops
#: (a few voxels per axis, batches of windows) faster in that layout (plain 3D CNN replay 0.68 x the time,
#: bit-identical output; DenseNet-121, whose boxes cover the map after block 1, unchanged: see
#: benchmarks/occlusion_arithmetic.py --layout). A switch for that comparison.
CHANNELS_LAST = True
_CONVS = {torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3}
_MAX_POOLS = {F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3}
_AVG_POOLS = {F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3}
_CATS = _tensor_funcs("cat", "concat", "concatenate")
_GETITEM = torch.Tensor.__getitem__
_INPLACE_DUNDERS = {"__iadd__": "__add__", "__isub__": "__sub__", "__imul__": "__mul__", "__itruediv__": "__truediv__"}


def _bind(names: Sequence[str], defaults: dict[str, Any], args: tuple, kwargs: dict) -> dict[str, Any]:
    out = dict(defaults)
    out.update(zip(names, args))
    out.update(kwargs)
    return out


def _tuple(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    v = tuple(v)
    return v * n if len(v) == 1 else v


class _Recorder(TorchFunctionMode):
    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.ids: dict[int, Ref] = {id(x): Ref(-1)}
        self.alive: list[Any] = [x]  # keeps recorded tensors alive so that their ids stay unique
        self.nodes: list[Node] = []
        self.reads_values: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flat, spec = tree_flatten((args, kwargs))
        refs = [self.ids.get(id(a)) if isinstance(a, torch.Tensor) else None for a in flat]
        if all(r is None for r in refs):
            return out  # does not depend on the input: a constant of the replay
        out_flat, out_spec = tree_flatten(out)
        tensors = [o for o in out_flat if isinstance(o, torch.Tensor)]
        name = _name(func).rsplit(".", 1)[-1]
        if not tensors:
            owner = getattr(func, "__self__", None)
            if name not in SHAPE_QUERIES or getattr(owner, "__name__", "") in _VALUE_PROPERTIES:
                self.reads_values = self.reads_values or _name(func)
            return out
        k = len(self.nodes)
        stored = tree_unflatten([r if r is not None else a for r, a in zip(refs, flat)], spec)
        base = tree_map(lambda t: t.detach().clone() if isinstance(t, torch.Tensor) else t, out)
        self.nodes.append(Node(func, stored[0], stored[1], base))
        single = isinstance(out, torch.Tensor)
        for i, o in enumerate(out_flat):
            if isinstance(o, torch.Tensor):
                self.ids[id(o)] = Ref(k, None if single else i)
                self.alive.append(o)
        return out


@dataclass
class Tape:
    """The recorded unoccluded pass of a model on ``x``, replayed for occluded boxes."""

    x: torch.Tensor
    nodes: list[Node]
    output: Ref
    #: ops run in full on a patched input because box replay does not cover them (name: calls)
    fallback_ops: dict[str, int] = field(default_factory=dict)
    #: ops run in full because their input had already changed everywhere
    spread_ops: int = 0
    _last: dict[int, list[int]] | None = field(default=None, repr=False)

    def base(self, ref: Ref) -> Any:
        if ref.node < 0:
            return self.x
        value = self.nodes[ref.node].base
        return value if ref.item is None else tree_flatten(value)[0][ref.item]

    # -- reading values over boxes ------------------------------------------------------------

    def _crop(self, value: Any, ref: Ref | None, const: torch.Tensor | None, boxes: list[Box], size: tuple[int, ...], pad: float) -> torch.Tensor:
        """``(B, C, *size)``: each sample's region ``boxes[b]`` (may exceed the map: ``pad`` there)."""
        if isinstance(value, Patch) and value.boxes == boxes:
            return value.crop
        base = const if ref is None else self.base(ref)
        spatial = base.shape[2:]
        inside = all(0 <= a and b <= s for box in boxes for (a, b), s in zip(box, spatial))
        shape = (len(boxes), base.shape[1]) + tuple(size)
        out = base.new_empty(shape) if inside else base.new_full(shape, pad)
        for i, box in enumerate(boxes):
            src = tuple(slice(max(a, 0), min(b, s)) for (a, b), s in zip(box, spatial))
            dst = (slice(None),) + tuple(slice(sl.start - a, sl.stop - a) for sl, (a, _) in zip(src, box))
            full = value.value[i] if isinstance(value, Batched) else base[0]
            piece = out[i]
            piece[dst] = full[(slice(None),) + src]
            if isinstance(value, Patch):
                pb = value.boxes[i]
                inter = [(max(a, pa), min(b, pz)) for (a, b), (pa, pz) in zip(box, pb)]
                if all(lo < hi for lo, hi in inter):
                    piece[(slice(None),) + tuple(slice(lo - a, hi - a) for (lo, hi), (a, _) in zip(inter, box))] = value.crop[
                        (i, slice(None)) + tuple(slice(lo - pa, hi - pa) for (lo, hi), (pa, _) in zip(inter, pb))
                    ]
        return out

    def materialize(self, value: Any, ref: Ref) -> Batched | PerSample:
        """A patched value as a full batch."""
        if not isinstance(value, Patch):
            return value
        base = self.base(ref)
        out = base.expand(len(value.boxes), *base.shape[1:]).clone()
        for i, box in enumerate(value.boxes):
            out[(i, slice(None)) + tuple(slice(a, b) for a, b in box)] = value.crop[i]
        return Batched(out)

    # -- replay -------------------------------------------------------------------------------

    def replay(self, boxes: list[Box], crop: torch.Tensor) -> torch.Tensor:
        """The model output ``(B, ...)`` for inputs equal to ``x`` except ``crop[b]`` on ``boxes[b]``."""
        last = self._last_uses()
        with torch.inference_mode():
            values: dict[int, Any] = {-1: _make(boxes, crop, self.x)}
            for k, node in enumerate(self.nodes):
                values[k] = self._step(node, values)
                for done in last.get(k, ()):  # values no later node reads are freed, as a forward pass frees them
                    values.pop(done, None)
            out = self.materialize(self._value(self.output, values), self.output)
        if isinstance(out, PerSample):
            return torch.cat(out.values)
        return out.value

    def _last_uses(self) -> dict[int, list[int]]:
        """For each node index, the values whose last reader it is (the output is never freed)."""
        if self._last is None:
            reader: dict[int, int] = {}
            for k, node in enumerate(self.nodes):
                for a in tree_flatten((node.args, node.kwargs))[0]:
                    if isinstance(a, Ref):
                        reader[a.node] = k
            reader.pop(self.output.node, None)
            self._last = {}
            for v, k in reader.items():
                self._last.setdefault(k, []).append(v)
        return self._last

    def _value(self, ref: Ref, values: dict[int, Any]) -> Any:
        v = values[ref.node]
        if ref.item is None:
            return v
        if isinstance(v, Batched):
            return Batched(tree_flatten(v.value)[0][ref.item])
        return PerSample([tree_flatten(s)[0][ref.item] for s in v.values])

    def _step(self, node: Node, values: dict[int, Any]) -> Any:
        flat, spec = tree_flatten((node.args, node.kwargs))
        refs = [a if isinstance(a, Ref) else None for a in flat]
        vals = [self._value(r, values) if r is not None else None for r in refs]
        out_base = node.base
        if isinstance(out_base, torch.Tensor) and out_base.ndim == self.x.ndim:
            handler = _handler(node.func, node.kwargs, node.args)
            if handler is not None:
                result = handler(self, node, flat, spec, refs, vals)
                if result is not None:
                    return result
        return self._full(node, flat, spec, refs, vals)

    def _full(self, node: Node, flat: list, spec: Any, refs: list, vals: list) -> Any:
        """Run the op on full values: batched where the result has the batch layout, else per sample."""
        if any(isinstance(v, Patch) for v in vals) and _handler(node.func, node.kwargs, node.args) is None:  # not covered
            self.fallback_ops[_name(node.func)] = self.fallback_ops.get(_name(node.func), 0) + 1
        else:  # its input already changed everywhere (the receptive field covers the map)
            self.spread_ops += 1
        func, kwargs_fix = _out_of_place(node.func, node.kwargs)
        full = [self.materialize(v, r) if r is not None else None for v, r in zip(vals, refs)]
        n = next(len(v.values) if isinstance(v, PerSample) else v.value.shape[0] for v in full if v is not None)
        if all(not isinstance(v, PerSample) for v in full if v is not None):
            args, kwargs = tree_unflatten([v.value if v is not None else a for v, a in zip(full, flat)], spec)
            try:
                out = func(*args, **{**kwargs, **kwargs_fix})
                if _batch_layout(out, node.base, n):
                    return Batched(out)
            except Exception:  # e.g. a constant with batch 1 concatenated: replay per sample
                pass
        outs = []
        for i in range(n):
            items = []
            for v, a in zip(full, flat):
                if v is None:
                    items.append(a)
                elif isinstance(v, PerSample):
                    items.append(v.values[i])
                else:
                    items.append(v.value[i : i + 1])
            args, kwargs = tree_unflatten(items, spec)
            outs.append(func(*args, **{**kwargs, **kwargs_fix}))
        if all(_batch_layout(o, node.base, 1) for o in outs):
            return Batched(torch.cat(outs) if isinstance(node.base, torch.Tensor) else _cat_tuples(outs))
        return PerSample(outs)


def _cat_tuples(outs: list) -> Any:
    flat0, spec = tree_flatten(outs[0])
    cols = [tree_flatten(o)[0] for o in outs]
    return tree_unflatten([torch.cat([c[j] for c in cols]) if isinstance(flat0[j], torch.Tensor) else flat0[j] for j in range(len(flat0))], spec)


def _batch_layout(out: Any, base: Any, n: int) -> bool:
    """Whether ``out`` is ``base`` with a batch of ``n`` in place of its batch of one."""
    of, _ = tree_flatten(out)
    bf, _ = tree_flatten(base)
    if len(of) != len(bf):
        return False
    for o, b in zip(of, bf):
        if isinstance(b, torch.Tensor):
            if not isinstance(o, torch.Tensor) or b.ndim == 0 or b.shape[0] != 1 or tuple(o.shape) != (n,) + tuple(b.shape[1:]):
                return False
    return True


def _out_of_place(func: Callable, kwargs: dict) -> tuple[Callable, dict]:
    """The function to replay (never in place: the cached values must not change) and keyword fixes."""
    fix = {"inplace": False} if kwargs.get("inplace") else {}
    name = getattr(func, "__name__", "")
    if name in _INPLACE_DUNDERS:
        return getattr(torch.Tensor, _INPLACE_DUNDERS[name]), fix
    if name.endswith("_") and not name.startswith("_") and getattr(torch.Tensor, name, None) is func:
        plain = getattr(torch.Tensor, name[:-1], None)
        if plain is not None:
            return plain, fix
        return (lambda t, *a, **k: getattr(t.clone(), name)(*a, **k)), fix
    return func, fix


#: A changed box covering more than this share of its map is continued as a full batch: on
#: nearly the whole map, copying crops in and out costs more than the voxels it saves.
FULL_SHARE = 0.5


def _make(boxes: list[Box], crop: torch.Tensor, base: torch.Tensor) -> Patch | Batched:
    spatial = base.shape[2:]
    if all(b[0] == 0 and b[1] == s for box in boxes for b, s in zip(box, spatial)):
        return Batched(crop)
    if math.prod(b - a for a, b in boxes[0]) > FULL_SHARE * math.prod(spatial):
        out = base.expand(len(boxes), *base.shape[1:]).clone()
        for i, box in enumerate(boxes):
            out[(i, slice(None)) + tuple(slice(a, b) for a, b in box)] = crop[i]
        return Batched(out)
    return Patch(boxes, crop)


def _common(ranges: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """Ranges of one common length covering each given range, inside ``[0, n)``."""
    length = min(n, max(b - a for a, b in ranges))
    return [(max(0, min(a, n - length)), max(0, min(a, n - length)) + length) for a, _ in ranges]


def _boxes_common(per_sample: list[list[tuple[int, int]]], spatial: Sequence[int]) -> list[Box]:
    axes = [_common([s[ax] for s in per_sample], n) for ax, n in enumerate(spatial)]
    return [tuple(axes[ax][i] for ax in range(len(spatial))) for i in range(len(per_sample))]


def _handler(func: Callable, kwargs: dict, args: tuple) -> Callable | None:
    if func in _CONVS:
        return _conv
    if func in _MAX_POOLS or func in _AVG_POOLS:
        return _pool
    if func is F.batch_norm:
        training = args[5] if len(args) > 5 else kwargs.get("training", False)
        return None if training else _pointwise
    if func in _DROPOUTS:
        training = args[2] if len(args) > 2 else kwargs.get("training", True)
        return None if training else _pointwise
    if func in POINTWISE:
        return _pointwise
    if func in _CATS:
        return _cat
    if func is _GETITEM:
        return _getitem
    return None


def _pointwise(tape: Tape, node: Node, flat: list, spec: Any, refs: list, vals: list) -> Patch | None:
    spatial = node.base.shape[2:]
    boxes: list[list[tuple[int, int]]] | None = None
    readers = []
    for i, (a, r, v) in enumerate(zip(flat, refs, vals)):
        t = tape.base(r) if r is not None else a
        if not isinstance(t, torch.Tensor):
            continue
        if t.ndim != node.base.ndim or tuple(t.shape[2:]) != tuple(spatial):
            if t.ndim > node.base.ndim or (t.ndim == node.base.ndim and any(n != 1 for n in t.shape[2:])):
                return None  # broadcast along space: not per voxel
            if r is not None:
                return None  # a changed value broadcast over the map (a global gate) changes every voxel
            continue
        if r is not None and not isinstance(v, Patch):
            return None  # changed everywhere: a full pass
        readers.append(i)
        if isinstance(v, Patch):
            boxes = [list(b) for b in v.boxes] if boxes is None else [[(min(p, q), max(s, t_)) for (p, s), (q, t_) in zip(u, w)] for u, w in zip(boxes, v.boxes)]
    if boxes is None:
        return None
    common = _boxes_common(boxes, spatial)
    size = tuple(b - a for a, b in common[0])
    items = list(flat)
    for i in readers:
        items[i] = tape._crop(vals[i], refs[i], None if refs[i] is not None else flat[i], common, size, 0.0)
    args, kwargs = tree_unflatten(items, spec)
    func, fix = _out_of_place(node.func, node.kwargs)
    out = func(*args, **{**kwargs, **fix})
    if tuple(out.shape) != (len(common), node.base.shape[1]) + size:
        return None
    return _make(common, out, node.base)


def _getitem(tape: Tape, node: Node, flat: list, spec: Any, refs: list, vals: list) -> Patch | None:
    src, index = node.args[0], node.args[1] if len(node.args) > 1 else None
    value = vals[0] if refs[0] is not None else None
    if not isinstance(src, Ref) or not isinstance(value, Patch) or any(isinstance(a, Ref) for a in flat[1:]):
        return None
    index = index if isinstance(index, tuple) else (index,)
    full = slice(None)
    if len(index) < 2 or index[0] != full or not isinstance(index[1], slice) or any(i != full for i in index[2:]):
        return None
    out = value.crop[:, index[1]]
    if out.shape[1] != node.base.shape[1]:
        return None
    return Patch(value.boxes, out)


def _cat(tape: Tape, node: Node, flat: list, spec: Any, refs: list, vals: list) -> Patch | None:
    members = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if not isinstance(members, (list, tuple)) or dim % node.base.ndim != 1:
        return None
    spatial = tuple(node.base.shape[2:])
    boxes = None
    flat, vals = flat[: len(members)], vals[: len(members)]
    for m, v in zip(flat, vals):
        t = tape.base(m) if isinstance(m, Ref) else m
        if not isinstance(t, torch.Tensor) or tuple(t.shape[2:]) != spatial:
            return None
        if isinstance(m, Ref):
            if not isinstance(v, Patch):
                return None
            boxes = [list(b) for b in v.boxes] if boxes is None else [[(min(p, q), max(s, e)) for (p, s), (q, e) in zip(u, w)] for u, w in zip(boxes, v.boxes)]
    if boxes is None or any(isinstance(m, (list, tuple)) for m in members):
        return None
    common = _boxes_common(boxes, spatial)
    size = tuple(b - a for a, b in common[0])
    crops = [tape._crop(v, m if isinstance(m, Ref) else None, None if isinstance(m, Ref) else m, common, size, 0.0) for m, v in zip(flat, vals)]
    return _make(common, torch.cat(crops, dim=1), node.base)


def _window_op(tape: Tape, node: Node, vals: list, refs: list, k: tuple, s: tuple, p: tuple, d: tuple, pad: float, call: Callable) -> Patch | Batched | None:
    """A sliding-window op on the changed box: outputs whose window meets the change, from a padded crop."""
    value = vals[0]
    if refs[0] is None or not isinstance(value, Patch) or any(r is not None for r in refs[1:]):
        return None
    n_out = node.base.shape[2:]
    per_sample = []
    for box in value.boxes:
        ranges = []
        for (c0, c1), kk, ss, pp, dd, no in zip(box, k, s, p, d, n_out):
            lo = min(no - 1, max(0, math.ceil((c0 + pp - dd * (kk - 1)) / ss)))
            hi = min(no - 1, (c1 - 1 + pp) // ss)
            ranges.append((lo, max(lo, hi) + 1))
        per_sample.append(ranges)
    out_boxes = _boxes_common(per_sample, n_out)
    size_out = tuple(b - a for a, b in out_boxes[0])
    in_boxes = [
        tuple((a * ss - pp, (b - 1) * ss - pp + dd * (kk - 1) + 1) for (a, b), kk, ss, pp, dd in zip(box, k, s, p, d)) for box in out_boxes
    ]
    size_in = tuple(b - a for a, b in in_boxes[0])
    crop = tape._crop(value, refs[0], None, in_boxes, size_in, pad)
    out = call(crop)
    if tuple(out.shape) != (len(out_boxes), node.base.shape[1]) + size_out:
        return None
    return _make(out_boxes, out, node.base)


def _conv(tape: Tape, node: Node, flat: list, spec: Any, refs: list, vals: list) -> Any:
    dim = _CONVS[node.func]
    b = _bind(("input", "weight", "bias", "stride", "padding", "dilation", "groups"), {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}, node.args, node.kwargs)
    if isinstance(b["padding"], str):
        if b["padding"] != "valid":
            return None
        b["padding"] = 0
    if isinstance(b["weight"], Ref) or isinstance(b["bias"], Ref):
        return None
    k = tuple(b["weight"].shape[2:])
    s, p, d = _tuple(b["stride"], dim), _tuple(b["padding"], dim), _tuple(b["dilation"], dim)
    fn = node.func
    if dim == 3 and CHANNELS_LAST:
        return _window_op(tape, node, vals, refs, k, s, p, d, 0.0,
                          lambda c: fn(c.contiguous(memory_format=torch.channels_last_3d), b["weight"], b["bias"], s, 0, d, b["groups"]))
    return _window_op(tape, node, vals, refs, k, s, p, d, 0.0, lambda c: fn(c, b["weight"], b["bias"], s, 0, d, b["groups"]))


def _pool(tape: Tape, node: Node, flat: list, spec: Any, refs: list, vals: list) -> Any:
    is_max = node.func in _MAX_POOLS
    dim = _MAX_POOLS[node.func] if is_max else _AVG_POOLS[node.func]
    if is_max:
        b = _bind(("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                  {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False}, node.args, node.kwargs)
        if b["return_indices"]:
            return None
    else:
        b = _bind(("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
                  {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True, "divisor_override": None}, node.args, node.kwargs)
        b["dilation"] = 1
    k = _tuple(b["kernel_size"], dim)
    s = _tuple(b["stride"], dim) if b["stride"] not in (None, (), []) else k
    p, d = _tuple(b["padding"], dim), _tuple(b["dilation"], dim)
    fn = node.func
    if is_max:
        return _window_op(tape, node, vals, refs, k, s, p, d, float("-inf"), lambda c: fn(c, k, s, 0, d))
    n_in = tape.base(refs[0]).shape[2:]
    floor_out = tuple((n + 2 * pp - kk) // ss + 1 for n, pp, kk, ss in zip(n_in, p, k, s))
    if tuple(node.base.shape[2:]) != floor_out or (any(p) and not b["count_include_pad"]):
        return None  # partial windows (ceil mode) or uncounted padding change the divisor at the border
    extra = () if b["divisor_override"] is None else (b["divisor_override"],)
    return _window_op(tape, node, vals, refs, k, s, p, d, 0.0, lambda c: fn(c, k, s, 0, False, True, *extra))


def record(module: torch.nn.Module, x: torch.Tensor) -> tuple[Tape | None, str | None, torch.Tensor | None]:
    """Run ``module`` on ``x`` once, recording the tape; returns ``(tape, why_not, output)``.

    ``tape`` is None with a reason when the model cannot be replayed
    incrementally (its forward reads input values, or its output does not
    derive from the input).
    """
    xr = x.detach().clone()  # a model that changes its input in place must change neither x nor the cached input
    recorder = _Recorder(xr)
    with torch.inference_mode(), recorder:
        out = module(xr)
    if recorder.reads_values:
        return None, f"the forward reads values of its input ({recorder.reads_values}), so it may branch on them", out
    if not isinstance(out, torch.Tensor) or id(out) not in recorder.ids:
        return None, "the output does not derive from the input through torch operations", out
    return Tape(x, recorder.nodes, recorder.ids[id(out)]), None, out
