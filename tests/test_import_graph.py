"""The modules of ``napari_xai`` import each other without circles.

The graph is built from the source with ``ast``: every ``import`` and
``from ... import`` anywhere in a module (function-level imports included,
since a lazy import is how a circle usually hides), resolved to the module
it loads. ``from package import name`` counts as an import of the submodule
``package.name`` when there is one, else of ``package``. The implicit import
of a module's parent packages is not an edge (every submodule has it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import napari_xai

ROOT = Path(napari_xai.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # ``import a.b.c`` of a package-internal name
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_package_has_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_checker_finds_a_planted_cycle():
    graph = import_graph()
    graph["napari_xai.engine.errors"] = graph["napari_xai.engine.errors"] | {"napari_xai.engine.explain"}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]


def test_the_engine_imports_no_host_and_not_the_samples():
    """The engine's modules import no host, no sample, not the session and not the command lines."""
    graph = import_graph()
    for module, targets in graph.items():
        if not module.startswith("napari_xai.engine"):
            continue
        bad = {t for t in targets if t.startswith(("napari_xai.samples", "napari_xai._napari", "napari_xai.cohort", "napari_xai.session", "napari_xai.cli"))}
        assert not bad, f"{module} imports {sorted(bad)}"


def test_the_session_imports_no_host():
    """The host-neutral session imports the engine (and the samples, which register themselves), never a host or a command line."""
    graph = import_graph()
    for module, targets in graph.items():
        if not module.startswith("napari_xai.session"):
            continue
        bad = {t for t in targets if t.startswith(("napari_xai._napari", "napari_xai.cohort", "napari_xai.cli"))}
        assert not bad, f"{module} imports {sorted(bad)}"
