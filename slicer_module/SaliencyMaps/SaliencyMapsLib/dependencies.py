"""What Slicer needs for the napari-xai engine, checked and installed on first use with the user's consent.

Rules:

- the host is checked first, before anything is installed: the engine needs
  Python >= 3.10 (``requires-python`` in the repository's pyproject.toml), so
  the module needs Slicer 5.10 or later (Slicer 5.8 embeds Python 3.9.10,
  5.10 embeds 3.12). On an older Slicer :func:`check_host` raises and nothing,
  not even torch, is installed;
- nothing is installed at import time: :func:`ensure_dependencies` runs when
  the user presses Apply (or calls the Logic), after a confirmation prompt;
- the engine itself ships with the extension: the extension's CMake installs
  the ``napari_xai`` package beside this module (the module's Python library
  folder, which Slicer puts on ``sys.path``), so it is never downloaded. In a
  source checkout loaded through *Additional module paths* it is installed
  from the checkout with ``pip install --no-deps``;
- torch comes from Slicer's PyTorch extension (``PyTorchUtils``, which picks
  the wheel matching the GPU driver), never from pip here;
- Slicer's own SimpleITK (and numpy) are never replaced: the engine's other
  requirements (``Resources/requirements.txt``) install under a constraints
  file pinning the versions Slicer already has.

The functions take the Slicer calls they need as arguments, so that the plan
is tested without the application. This file must import on Python 3.9
(Slicer 5.8), so that the refusal is shown instead of a traceback.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

#: Import names the engine needs, with the distribution that provides each.
REQUIRED_IMPORTS = {
    "torch": "torch",
    "napari_xai": "napari-xai",
    "safetensors": "safetensors",
    "scipy": "scipy",
    "matplotlib": "matplotlib",
}
#: Distributions Slicer ships itself: never upgraded or replaced by this module.
PROTECTED = ("SimpleITK", "numpy")

#: The oldest Slicer the module supports, and why: the engine's requires-python.
MINIMUM_SLICER = (5, 10)
MINIMUM_PYTHON = (3, 10)

MODULE_DIR = Path(__file__).resolve().parent.parent
REQUIREMENTS_FILE = MODULE_DIR / "Resources" / "requirements.txt"


class InstallError(RuntimeError):
    """The engine cannot be made available here; ``str()`` is the problem and the fix, for a dialog."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\n\nFix: {fix}")


def host_problem(slicer_version: Sequence[int] | None, python_version: Sequence[int] = tuple(sys.version_info[:2])) -> str:
    """Why this Slicer cannot run the engine, or ``""`` when it can.

    Parameters
    ----------
    slicer_version : (major, minor) or None
        ``(slicer.app.majorVersion, slicer.app.minorVersion)``; None outside the application.
    python_version : (major, minor)
        The embedded Python's version.
    """
    py = tuple(int(v) for v in python_version[:2])
    if py < MINIMUM_PYTHON:
        needed = ".".join(map(str, MINIMUM_PYTHON))
        return (
            f"SaliencyMaps needs Slicer {MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]} or later: its engine needs Python {needed} or later, "
            f"and this Slicer{_version_text(slicer_version)} embeds Python {py[0]}.{py[1]}."
        )
    if slicer_version is not None and tuple(int(v) for v in slicer_version[:2]) < MINIMUM_SLICER:
        return (
            f"SaliencyMaps needs Slicer {MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]} or later; this is Slicer{_version_text(slicer_version)}."
        )
    return ""


def _version_text(slicer_version: Sequence[int] | None) -> str:
    return f" {slicer_version[0]}.{slicer_version[1]}" if slicer_version is not None else ""


def check_host(slicer_version: Sequence[int] | None, python_version: Sequence[int] = tuple(sys.version_info[:2])) -> None:
    """Raise :class:`InstallError` when this Slicer is too old for the engine (see :func:`host_problem`)."""
    problem = host_problem(slicer_version, python_version)
    if problem:
        raise InstallError(problem, "Install 3D Slicer 5.10 or later (download.slicer.org) and this extension for it.")


def missing_imports(find_spec: Callable[[str], object] = importlib.util.find_spec) -> list[str]:
    """Import names among :data:`REQUIRED_IMPORTS` that cannot be found (nothing is imported)."""
    missing = []
    for name in REQUIRED_IMPORTS:
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def read_requirements(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """Requirement lines of ``Resources/requirements.txt`` (comments and blank lines skipped)."""
    lines = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def source_checkout(module_dir: Path = MODULE_DIR) -> Path | None:
    """The napari-xai source checkout holding this module (``<repo>/slicer_module/SaliencyMaps``), or None.

    None in an installed extension, where the engine is bundled instead.
    """
    root = module_dir.parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "napari-xai"' in pyproject.read_text(encoding="utf-8") and (root / "napari_xai").is_dir():
        return root
    return None


def constraints_text(version: Callable[[str], str] = importlib.metadata.version) -> str:
    """Pins (``name==version``) for the :data:`PROTECTED` distributions that pip can see."""
    pins = []
    for name in PROTECTED:
        try:
            pins.append(f"{name}=={version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass  # built into Slicer without metadata: nothing will ask for it (napari-xai is --no-deps)
    return "\n".join(pins) + ("\n" if pins else "")


@dataclass
class InstallPlan:
    """What :func:`ensure_dependencies` would do."""

    torch: bool = False
    pip_steps: list = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.torch and not self.pip_steps

    def describe(self) -> str:
        """Text for the confirmation prompt."""
        lines = []
        if self.torch:
            lines.append("- PyTorch, through the PyTorch extension (PyTorchUtils), matching this computer's GPU driver")
        for step in self.pip_steps:
            lines.append("- pip install " + " ".join(a for a in step if not a.startswith("-c") and not a.endswith(".txt")))
        return "\n".join(lines)


def make_plan(missing: list, source: Path | None, requirements: list, constraints_path: str | None) -> InstallPlan:
    """The install steps for the missing imports.

    torch first (PyTorchUtils), then napari-xai from the source checkout with
    ``--no-deps`` (when it is neither bundled nor installed), then its other
    requirements under the constraints file.

    Raises
    ------
    InstallError
        napari-xai is missing and there is no checkout to install it from (a
        broken extension install: the engine ships with the extension).
    """
    plan = InstallPlan(torch="torch" in missing)
    others = [m for m in missing if m not in ("torch", "napari_xai")]
    if "napari_xai" in missing:
        if source is None:
            raise InstallError(
                "The napari-xai engine is missing from this SaliencyMaps extension (it ships inside the extension, "
                f"beside {MODULE_DIR.name}).",
                "Reinstall the SaliencyMaps extension from the Extensions Manager, then restart Slicer.",
            )
        plan.pip_steps.append(["--no-deps", str(source)])
    if others or "napari_xai" in missing:
        step = list(requirements)
        if constraints_path:
            step += ["-c", constraints_path]
        plan.pip_steps.append(step)
    return plan


def ensure_dependencies(
    confirm: Callable[[str], bool],
    pip_install: Callable[[list], object],
    install_torch: Callable[[], object],
    slicer_version: Sequence[int] | None,
    python_version: Sequence[int] = tuple(sys.version_info[:2]),
    find_spec: Callable[[str], object] = importlib.util.find_spec,
    requirements: list | None = None,
    source: Path | None = None,
) -> bool:
    """Check the host, then install what is missing, after asking.

    Parameters
    ----------
    confirm : callable
        ``confirm(text) -> bool``, e.g. ``slicer.util.confirmOkCancelDisplay``.
    pip_install : callable
        ``pip_install(args)``, e.g. ``slicer.util.pip_install`` (takes a list of pip arguments).
    install_torch : callable
        Installs torch, e.g. ``PyTorchUtils.PyTorchUtilsLogic().installTorch``; returns the
        module, or None when the user declined.
    slicer_version : (major, minor) or None
        Checked (with ``python_version``) before anything else: see :func:`check_host`.

    Returns
    -------
    bool
        True when everything is importable; False when the user declined.

    Raises
    ------
    InstallError
        Slicer too old, no source for the engine, or packages still missing after installing.
    subprocess.CalledProcessError
        pip failed (``slicer.util.pip_install`` raises it).
    """
    check_host(slicer_version, python_version)
    missing = missing_imports(find_spec)
    if not missing:
        return True
    requirements = read_requirements() if requirements is None else requirements
    source = source_checkout() if source is None else source
    constraints = constraints_text()
    constraints_path = None
    if constraints:
        fd, constraints_path = tempfile.mkstemp(prefix="SaliencyMaps-constraints-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(constraints)
    plan = make_plan(missing, source, requirements, constraints_path)
    text = (
        "SaliencyMaps needs Python packages that are not installed in Slicer yet:\n\n"
        + plan.describe()
        + "\n\nSlicer's own SimpleITK and numpy are kept. This downloads packages and may take some minutes. Install now?"
    )
    if not confirm(text):
        return False
    if plan.torch and install_torch() is None:
        return False
    for step in plan.pip_steps:
        pip_install(step)
    importlib.invalidate_caches()
    still = missing_imports(find_spec)
    if still:
        raise InstallError(
            f"After installing, Python still cannot find {', '.join(still)}.",
            "See the Python console for pip's messages, fix the cause (network, disk space, permissions) and press Apply again.",
        )
    return True
