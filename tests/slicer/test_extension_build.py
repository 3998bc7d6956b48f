"""The extension as the Slicer extensions index builds it: CMake at the repository's root, the engine
bundled into the module's Python library folder, one repository address everywhere, a shipped screenshot.

The CMake run uses a stand-in Slicer build (tests/slicer/cmake_slicer_standin: SlicerConfig and the
scripted-module macros reduced to what they do with files); the extension's own CMake files run as written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib

import pytest

from SaliencyMapsLib import dependencies

from tests.slicer.conftest import MODULE_DIR, MODULE_FILE, REPO


def test_requirements_match_pyproject_minus_slicer_provided():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    name = lambda req: re.split(r"[<>=!~ ;\[]", req, maxsplit=1)[0].lower()  # noqa: E731
    expected = {name(r) for r in project} - {"torch", "numpy", "simpleitk"}
    assert {name(r) for r in dependencies.read_requirements()} == expected
    assert dependencies.source_checkout() == REPO


def test_extension_files_list_every_module_file():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "slicerMacroBuildScriptedModule" in cmake and "slicer_add_python_unittest" in cmake
    for py in sorted((MODULE_DIR / "SaliencyMapsLib").glob("*.py")):
        assert f"${{MODULE_NAME}}Lib/{py.name}" in cmake, py.name
    for resource in ("Resources/Icons/${MODULE_NAME}.png", "Resources/UI/${MODULE_NAME}.ui", "Resources/requirements.txt"):
        assert resource in cmake
        assert (MODULE_DIR / resource.replace("${MODULE_NAME}", "SaliencyMaps")).is_file()
    assert (MODULE_DIR / "Resources/Icons/SaliencyMaps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    top = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "add_subdirectory(slicer_module/SaliencyMaps)" in top and "Slicer_EXTENSION_CPACK" in top
    entry = json.loads((MODULE_DIR.parent / "SlicerSaliencyMaps.json").read_text(encoding="utf-8"))
    assert {"$schema", "category", "scm_url"} <= set(entry)


STANDIN = REPO / "tests" / "slicer" / "cmake_slicer_standin"


CMAKE = shutil.which("cmake")


needs_cmake = pytest.mark.skipif(CMAKE is None, reason="cmake is not installed (.ci/run installs it)")


def urls():
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]


def cmake_vars(path):
    return dict(re.findall(r'^set\((EXTENSION_\w+) "([^"]*)"\)', path.read_text(encoding="utf-8"), re.M))


@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    """The extension configured against a Slicer 5.10 stand-in (shared by the tests that read the build tree)."""
    tmp = tmp_path_factory.mktemp("extension")
    build, result = configure(tmp, "5.10.0", "3.12.10")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return tmp, build


def configure(tmp_path, slicer_version, python_version):
    build = tmp_path / f"build-{slicer_version}"
    return build, subprocess.run(
        [CMAKE, "-S", str(REPO), "-B", str(build), f"-DSlicer_DIR={STANDIN}", f"-DSTANDIN_SLICER_VERSION={slicer_version}",
         f"-DSTANDIN_PYTHON_VERSION={python_version}", "-DBUILD_TESTING=ON"],
        capture_output=True, text=True, timeout=300,
    )


@needs_cmake
def test_the_index_build_installs_the_module_with_its_engine(configured):
    """Blocker 2 and 3: configure at the root, install, and the installed folder alone runs the engine."""
    tmp_path, build = configured
    assert (build / "standin-modules.txt").read_text().split() == ["SaliencyMaps"]
    assert (build / "standin-tests.txt").read_text().split() == ["py_SaliencyMaps"]
    prefix = tmp_path / "install"
    result = subprocess.run([CMAKE, "--install", str(build), "--prefix", str(prefix)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lib = prefix / "lib" / "Slicer-5.10" / "qt-scripted-modules"
    for rel in ("SaliencyMaps.py", "SaliencyMapsLib/dependencies.py", "Resources/UI/SaliencyMaps.ui", "Resources/requirements.txt",
                "napari_xai/__init__.py", "napari_xai/engine/explain.py", "napari_xai/method_catalogue.json",
                "napari_xai/samples/sample_brain_t1.nii.gz"):
        assert (lib / rel).is_file(), rel
    assert not (lib / "napari_xai" / "_napari").exists() and not list(lib.rglob("__pycache__"))
    shipped = {p.relative_to(lib).as_posix() for p in (lib / "napari_xai").rglob("*.py")}
    expected = {p.relative_to(REPO).as_posix() for p in (REPO / "napari_xai").rglob("*.py") if "_napari" not in p.parts}
    assert shipped == expected
    # Slicer puts the module folder on sys.path; from there alone (no checkout, no pip) the engine imports,
    # nothing needs installing but PyPI requirements, and the method menu is complete.
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(lib)!r})
        import napari_xai, napari_xai.engine
        assert napari_xai.__file__.startswith({str(lib)!r}), napari_xai.__file__
        from SaliencyMapsLib import dependencies, params
        assert dependencies.source_checkout() is None
        assert "napari_xai" not in dependencies.missing_imports()
        assert len(params.method_choices()) == len(napari_xai.engine.list_methods())
        print("bundled engine ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert run.returncode == 0 and "bundled engine ok" in run.stdout, run.stderr[-3000:]


@needs_cmake
def test_the_extension_refuses_to_build_for_slicer_58(tmp_path):
    """Blocker 1 at build time: Slicer 5.8 (Python 3.9) is refused by configure, with the reason."""
    _build, result = configure(tmp_path, "5.8.1", "3.9.10")
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert "needs Slicer 5.10 or later" in message and "this is Slicer 5.8.1 with Python 3.9.10" in message


@needs_cmake
def test_the_extension_description_carries_the_project_addresses(configured):
    _tmp, build = configured
    description = dict(line.split(" ", 1) for line in (build / "SlicerSaliencyMaps.s4ext").read_text().splitlines())
    assert description["homepage"] == urls()["Documentation"]


def test_one_repository_address_everywhere():
    """Blocker 3: the CMake files, the index entry, the module's help and the README use pyproject's [project.urls]."""
    u = urls()
    assert set(u) >= {"Homepage", "Repository", "Documentation", "Issues"}
    home = u["Homepage"]
    assert u["Repository"] == home + ".git" and u["Documentation"].startswith(home + "/") and u["Issues"] == home + "/issues"
    owner_repo = home.removeprefix("https://github.com/")
    raw = f"https://raw.githubusercontent.com/{owner_repo}/main/"
    ext = cmake_vars(REPO / "CMakeLists.txt")
    assert ext["EXTENSION_HOMEPAGE"] == u["Documentation"]
    for key in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        values = ext[key].split()
        assert values, key
        for url in values:
            assert url.startswith(raw), url
            shipped = REPO / url.removeprefix(raw)
            assert shipped.is_file() and shipped.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", url
    assert ext["EXTENSION_DEPENDS"] == "PyTorch" and "5.10" in ext["EXTENSION_DESCRIPTION"]
    entry = json.loads((REPO / "slicer_module" / "SlicerSaliencyMaps.json").read_text(encoding="utf-8"))
    assert entry["scm_url"] == u["Repository"]
    assert entry.get("build_subdirectory", ".") == "."  # a plain (non-superbuild) extension: CMake runs at the root
    assert set(entry) <= {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                          "build_subdirectory", "enabled", "tier"}  # Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json
    assert entry["build_dependencies"] == ["PyTorch"] and entry["category"] == ext["EXTENSION_CATEGORY"]
    module_text = MODULE_FILE.read_text(encoding="utf-8")
    assert f'DOCUMENTATION_URL = "{u["Documentation"]}"' in module_text
    found = set(re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", module_text + (MODULE_DIR.parent / "README.md").read_text(encoding="utf-8")))
    found -= {"https://github.com/Slicer/Slicer", "https://github.com/Slicer/ExtensionsIndex"}
    assert found <= {home, home + ".git"}, found
    assert not (REPO / "slicer_module" / "CMakeLists.txt").exists()  # one extension CMakeLists, at the root
