"""Installing napari-xai into Slicer's Python, on first use and with the user's consent.

Rules:

- nothing is installed at import time: :func:`ensure_dependencies` runs when
  the user presses Apply (or calls the Logic), after a confirmation prompt;
- torch comes from Slicer's PyTorch extension (``PyTorchUtils``, which picks
  the wheel matching the GPU driver), never from pip here;
- Slicer's own SimpleITK (and numpy) are never replaced: napari-xai is
  installed with ``--no-deps`` and its other requirements
  (``Resources/requirements.txt``) under a constraints file pinning the
  versions Slicer already has.

The functions take the Slicer calls they need as arguments, so that the plan
is tested without the application.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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
#: Where napari-xai comes from when the module is not inside a source checkout.
PACKAGE_REQUIREMENT = "napari-xai"

MODULE_DIR = Path(__file__).resolve().parent.parent
REQUIREMENTS_FILE = MODULE_DIR / "Resources" / "requirements.txt"


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


def package_source(module_dir: Path = MODULE_DIR) -> str:
    """The napari-xai source checkout holding this module (``<repo>/slicer_module/SaliencyMaps``), else the PyPI name."""
    root = module_dir.parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "napari-xai"' in pyproject.read_text(encoding="utf-8"):
        return str(root)
    return PACKAGE_REQUIREMENT


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
    pip_steps: list[list[str]] = field(default_factory=list)

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


def make_plan(missing: list[str], source: str, requirements: list[str], constraints_path: str | None) -> InstallPlan:
    """The install steps for the missing imports.

    torch first (PyTorchUtils), then napari-xai with ``--no-deps``, then its
    other requirements under the constraints file.
    """
    plan = InstallPlan(torch="torch" in missing)
    others = [m for m in missing if m not in ("torch", "napari_xai")]
    if "napari_xai" in missing:
        plan.pip_steps.append(["--no-deps", source])
    if others or "napari_xai" in missing:
        step = list(requirements)
        if constraints_path:
            step += ["-c", constraints_path]
        plan.pip_steps.append(step)
    return plan


def ensure_dependencies(
    confirm: Callable[[str], bool],
    pip_install: Callable[[list[str]], object],
    install_torch: Callable[[], object],
    find_spec: Callable[[str], object] = importlib.util.find_spec,
    requirements: list[str] | None = None,
    source: str | None = None,
) -> bool:
    """Install what is missing, after asking. True when everything is importable (or was installed).

    Parameters
    ----------
    confirm : callable
        ``confirm(text) -> bool``, e.g. ``slicer.util.confirmOkCancelDisplay``.
    pip_install : callable
        ``pip_install(args)``, e.g. ``slicer.util.pip_install`` (takes a list of pip arguments).
    install_torch : callable
        Installs torch, e.g. ``PyTorchUtils.PyTorchUtilsLogic().installTorch``; returns the
        module or None when the user declined.
    """
    missing = missing_imports(find_spec)
    if not missing:
        return True
    requirements = read_requirements() if requirements is None else requirements
    constraints = constraints_text()
    constraints_path = None
    if constraints:
        fd, constraints_path = tempfile.mkstemp(prefix="SaliencyMaps-constraints-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(constraints)
    plan = make_plan(missing, source or package_source(), requirements, constraints_path)
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
    return not missing_imports(find_spec)
