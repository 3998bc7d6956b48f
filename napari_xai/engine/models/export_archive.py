"""Checking a ``torch.export`` archive (``.pt2``) before torch reads it.

``torch.export.load`` does more than read tensors: it unpickles entries the
archive marks ``use_pickle`` with full ``torch.load(weights_only=False)``,
``opaque_obj_*`` constants with plain ``pickle.loads``, ``custom_obj_*``
constants with TorchScript's unpickler; it falls back to full unpickling when
the sample inputs do not load weights-only; it loads AOTInductor shared
libraries; it hands symbolic-shape strings to ``sympy.sympify`` (which
``eval``\\ s them); and it resolves each graph node's target by walking
attributes of ``torch``, ``operator`` and ``math`` (``torch.os.system`` is
such a path). No switch of torch's turns all of that off, so this module reads
the archive with torch's own zip reader (the parser ``torch.export.load``
uses, so both see the same entries) and refuses anything but plain tensor
payloads, weights-only pickles and a graph of operators. The checked bytes
are the bytes handed to torch, so the file cannot change in between.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import operator
import re
from typing import Any, Iterator

import torch

from ..errors import ModelError, UntrustedModelError

# Entry names inside the archive (without its root folder), as torch writes
# them (torch.export.pt2_archive.constants).
_FIXED_ENTRIES = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_MODEL_JSON = re.compile(r"models/(?P<name>[A-Za-z0-9_.-]+)\.json")
_WEIGHTS_CONFIG = re.compile(r"data/weights/(?P<name>[A-Za-z0-9_.-]+)_weights_config\.json")
_CONSTANTS_CONFIG = re.compile(r"data/constants/(?P<name>[A-Za-z0-9_.-]+)_constants_config\.json")
_WEIGHT_PAYLOAD = re.compile(r"data/weights/weight_[0-9]+")
_CONSTANT_PAYLOAD = re.compile(r"data/constants/tensor_[0-9]+")
_SAMPLE_INPUTS = re.compile(r"data/sample_inputs/(?P<name>[A-Za-z0-9_.-]+)\.pt")
_EXTRA = re.compile(r"extra/[^/]+")

# Functions a symbolic shape expression may call: torch's sympy functions
# (the deserializer's namespace) and the sympy classes they print as.
_SYMPY_CALLS = {
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt",
    "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal",
    "ToFloat", "OpaqueUnaryFn_sqrt", "BitwiseFn_bitwise_and", "BitwiseFn_bitwise_or", "BitwiseFn_bitwise_xor",
    "Identity", "Max", "Min", "Abs", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "Piecewise",
    "ITE", "floor", "ceiling", "sqrt", "Integer", "Rational", "Float", "Symbol", "Add", "Mul", "Pow",
    "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan", "Equality", "Unequality",
}
# sympy's srepr writes symbols and numbers as calls with a string literal: Symbol('s77', integer=True).
_LITERAL_CALLS = {"Symbol", "Integer", "Rational", "Float"}
_LITERAL = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
_OPERATOR_TARGETS = {
    "getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs",
    "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "xor", "not_", "invert", "lshift", "rshift",
}
_MATH_TARGETS = {"ceil", "floor", "trunc", "sqrt", "exp", "log", "log2", "log10", "pow", "fabs", "isnan", "isinf"}


def checked_export_bytes(data: bytes, file_name: str) -> bytes:
    """Return ``data`` if it is a ``torch.export`` archive that loads without running the author's code.

    Parameters
    ----------
    data : bytes
        The whole archive, read once by the caller; the same bytes must be
        handed to ``torch.export.load`` (as a ``BytesIO``).
    file_name : str
        For messages.

    Raises
    ------
    UntrustedModelError
        An entry would be unpickled other than weights-only, an AOTInductor
        library would be loaded, a symbolic expression is not plain
        arithmetic, or a graph node calls something that is not an operator.
    ModelError
        The archive is not a readable ``torch.export`` archive.
    """
    try:
        reader = torch._C.PyTorchFileReader(io.BytesIO(data))
        names = list(reader.get_all_records())
    except Exception as err:  # miniz raises RuntimeError for damaged zips
        raise ModelError(
            f"{file_name} is not a readable torch.export archive ({type(err).__name__}).",
            "Check that the file is complete and was saved with torch.export.save.",
        ) from err
    if len(set(names)) != len(names):
        _refuse(file_name, "lists the same entry twice, so two readers could see different files")
    if "archive_format" not in names or reader.get_record("archive_format") != b"pt2":
        raise ModelError(
            f"{file_name} is a zip archive but not a torch.export archive (no archive_format 'pt2').",
            "Save the model with torch.export.save, or give the file its real suffix.",
        )
    for name in names:
        if not _known_entry(name):
            _refuse(file_name, f"holds the entry {name!r}, which torch.export.load would run or unpickle")
    models = [m.group("name") for m in map(_MODEL_JSON.fullmatch, names) if m]
    if not models:
        raise ModelError(f"{file_name} holds no exported program (models/*.json).", "Save the model with torch.export.save.")
    for model in models:
        for config_name, prefix in (
            (f"data/weights/{model}_weights_config.json", "weight_"),
            (f"data/constants/{model}_constants_config.json", "tensor_"),
        ):
            if config_name in names:
                _check_payload_config(_json(reader, config_name, file_name), prefix, config_name, file_name)
        graph = _json(reader, f"models/{model}.json", file_name)
        _check_graph(graph, file_name)
        sample = f"data/sample_inputs/{model}.pt"
        if sample in names:
            # torch.export.load tries weights-only first and falls back to full
            # unpickling; bytes that load weights-only here load weights-only there.
            try:
                torch.load(io.BytesIO(reader.get_record(sample)), map_location="cpu", weights_only=True)
            except Exception:
                _refuse(file_name, "holds sample inputs that are not plain tensors (they would be unpickled as Python objects)")
    return data


def _known_entry(name: str) -> bool:
    if name in _FIXED_ENTRIES:
        return True
    patterns = (_MODEL_JSON, _WEIGHTS_CONFIG, _CONSTANTS_CONFIG, _WEIGHT_PAYLOAD, _CONSTANT_PAYLOAD, _SAMPLE_INPUTS, _EXTRA)
    return any(p.fullmatch(name) for p in patterns)


def _refuse(file_name: str, why: str) -> None:
    raise UntrustedModelError(
        f"{file_name} is a torch.export archive that {why}; loading it could run code chosen by the file's author, "
        "so napari-xai refused it before torch read it.",
        "Re-export the model from plain tensors (torch.export.save of a model without custom objects or tensor "
        "subclasses), or, only if you trust the file and its author, load it with trust_pickle=True.",
    )


def _json(reader: Any, name: str, file_name: str) -> Any:
    try:
        return json.loads(reader.get_record(name).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{file_name}: the archive entry {name} is not valid JSON.", "The file is damaged; export it again.") from err


def _check_payload_config(config: Any, prefix: str, config_name: str, file_name: str) -> None:
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise ModelError(f"{file_name}: {config_name} is not a payload config.", "The file is damaged; export it again.")
    for fqn, meta in entries.items():
        if not isinstance(meta, dict):
            raise ModelError(f"{file_name}: {config_name} entry {fqn!r} is not an object.", "The file is damaged; export it again.")
        if meta.get("use_pickle") is not False:
            _refuse(file_name, f"marks {fqn!r} in {config_name} as pickled (use_pickle), which torch unpickles in full")
        path_name = meta.get("path_name")
        if not (isinstance(path_name, str) and re.fullmatch(re.escape(prefix) + r"[0-9]+", path_name)):
            _refuse(file_name, f"stores {fqn!r} as {path_name!r}, not as a plain tensor payload")


def _walk(obj: Any) -> Iterator[tuple[Any, Any]]:
    """Every (key, value) pair of every dict inside ``obj``."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                yield key, value
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _check_graph(graph: Any, file_name: str) -> None:
    if not isinstance(graph, dict):
        raise ModelError(f"{file_name}: the exported program is not a JSON object.", "The file is damaged; export it again.")
    for key in graph.get("range_constraints", {}) or {}:
        _check_expression(key, file_name)
    for key, value in _walk(graph):
        if key == "expr_str":
            _check_expression(value, file_name)
        elif key == "target" and isinstance(value, str):
            _check_target(value, file_name)


def _check_expression(expr: Any, file_name: str) -> None:
    """Symbolic-shape strings go to ``sympy.sympify``, which evaluates Python: allow sympy arithmetic on symbols only."""
    ok = isinstance(expr, str) and len(expr) < 10_000
    if ok:
        try:
            ok = _plain_sympy(ast.parse(expr, mode="eval").body)
        except SyntaxError:
            ok = False
    if not ok:
        _refuse(file_name, f"holds the symbolic expression {str(expr)[:80]!r}, which is not plain shape arithmetic")


def _plain_sympy(node: ast.AST) -> bool:
    """Whether ``node`` is arithmetic, comparisons and calls of sympy's number/shape classes (as ``srepr`` writes them),
    with no attribute access, subscripts or names of Python built-ins, so evaluating it can only build a sympy expression."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float, bool))
    if isinstance(node, ast.Name):
        return not node.id.startswith("_") and not hasattr(builtins, node.id)
    if isinstance(node, ast.BinOp):
        return _plain_sympy(node.left) and _plain_sympy(node.right)
    if isinstance(node, ast.UnaryOp):
        return _plain_sympy(node.operand)
    if isinstance(node, ast.BoolOp):
        return all(map(_plain_sympy, node.values))
    if isinstance(node, ast.Compare):
        return _plain_sympy(node.left) and all(map(_plain_sympy, node.comparators))
    if isinstance(node, ast.Tuple):
        return all(map(_plain_sympy, node.elts))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SYMPY_CALLS:
        literal_args = node.func.id in _LITERAL_CALLS
        for arg in node.args:
            if literal_args and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if not _LITERAL.fullmatch(arg.value):
                    return False
            elif not _plain_sympy(arg):
                return False
        return all(
            kw.arg is not None and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, (bool, int))
            for kw in node.keywords
        )
    return False


def _check_target(target: str, file_name: str) -> None:
    """A node may call torch operators (``torch.ops.<ns>.<op>[.<overload>]``), torch's ``sym_*`` helpers,
    and a few named functions of ``operator`` and ``math``; nothing else a dotted path could reach."""
    parts = target.split(".")
    ok = False
    if parts[:2] == ["torch", "ops"] and 3 <= len(parts) <= 5 and all(p.isidentifier() and not p.startswith("__") for p in parts):
        obj: Any = torch
        for part in parts[1:]:
            obj = getattr(obj, part, None)
            if obj is None:
                break
        ok = isinstance(obj, (torch._ops.OpOverload, torch._ops.OpOverloadPacket, torch._ops.HigherOrderOperator))
        if obj is None:
            ok = True  # unknown operator: torch's deserializer stops with its own error
    elif len(parts) == 2 and parts[0] == "torch" and parts[1].startswith("sym_"):
        ok = callable(getattr(torch, parts[1], None))
    elif len(parts) == 2 and parts[0] == "_operator":
        ok = parts[1] in _OPERATOR_TARGETS and hasattr(operator, parts[1])
    elif len(parts) == 2 and parts[0] == "math":
        ok = parts[1] in _MATH_TARGETS
    if not ok:
        _refuse(file_name, f"has a graph node calling {target!r}, which is not a torch operator")
