"""SaliencyMaps.ui in Qt Designer's loader (PyQt's uic, PyQt5 and PyQt6), with stand-ins carrying the real
CTK and qMRML widget properties (tests/slicer/uic_standins.py): every property the file sets exists on the
real widget, every bound widget carries its SlicerParameterName, and a property the widget lacks fails."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.slicer.conftest import REPO, UI_FILE

SCRIPT = textwrap.dedent(
    """
    import json, re, sys, tempfile
    sys.path.insert(0, {repo!r})
    from tests.slicer import uic_standins as s
    s.install()
    uic = __import__(s._binding + ".uic", fromlist=["uic"])
    app = s.QtWidgets.QApplication([])
    text = open({ui!r}, encoding="utf-8").read()
    # The <connections> pass vtkMRMLScene* between widgets, a C++ type PyQt signals cannot carry; the
    # module's tests check them with the PythonQt stand-ins instead.
    text = re.sub(r"<connections>.*</connections>", "", text, flags=re.S)
    text = text.replace({old!r}, {new!r})
    with tempfile.NamedTemporaryFile("w", suffix=".ui", delete=False) as f:
        f.write(text)
    top = uic.loadUi(f.name)
    out = {{"top": type(top).__name__, "bound": {{}}, "classes": {{}}}}
    for w in top.findChildren(s.QtWidgets.QWidget):
        if w.objectName():
            out["classes"][w.objectName()] = type(w).__name__
        name = w.property("SlicerParameterName")
        if name:
            out["bound"][name] = w.objectName()
    combo = top.findChild(s.qMRMLNodeComboBox, "outputSelector")
    out["output"] = [combo.nodeTypes, combo.noneEnabled, combo.addEnabled, combo.renameEnabled]
    path = top.findChild(s.ctkPathLineEdit, "modelPathLineEdit")
    out["path"] = [path.filters, path.nameFilters, path.settingKey]
    slider = top.findChild(s.ctkSliderWidget, "thresholdSliderWidget")
    out["slider"] = [slider.minimum, slider.maximum, slider.decimals, slider.singleStep, slider.value]
    top.resize(420, 640)
    out["png"] = bool(top.grab().save({png!r}))
    print(json.dumps(out))
    """
)


def load(binding, tmp_path, old="", new=""):
    if importlib.util.find_spec(binding) is None:
        pytest.skip(f"{binding} is not installed")
    png = str(tmp_path / f"panel_{binding}.png")
    script = SCRIPT.format(repo=str(REPO), ui=str(UI_FILE), old=old, new=new, png=png)
    env = dict(os.environ, UIC_STANDIN_BINDING=binding, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("binding", ["PyQt5", "PyQt6"])
def test_the_ui_file_loads_in_qt_designers_loader(binding, tmp_path):
    result = load(binding, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["top"] == "qMRMLWidget"
    assert out["bound"] == {
        "inputVolume": "inputSelector", "targetClass": "targetLineEdit", "regionSegmentation": "regionSegmentationSelector",
        "regionReduce": "reduceComboBox", "method": "methodComboBox", "outputVolume": "outputSelector",
        "thresholdFraction": "thresholdSliderWidget", "memoryBudgetMB": "memoryBudgetSpinBox", "sliceIndex": "sliceSpinBox",
    }
    classes = out["classes"]
    assert classes["modelPathLineEdit"] == "ctkPathLineEdit" and classes["inputsCollapsibleButton"] == "ctkCollapsibleButton"
    assert out["output"] == [["vtkMRMLScalarVolumeNode"], True, True, True]
    assert out["path"][0] == 0x002 | 0x010 and out["path"][2] == "SaliencyMapsModelPath"
    assert out["slider"] == [0.0, 1.0, 2, 0.01, 0.1]
    assert out["png"] and (tmp_path / f"panel_{binding}.png").stat().st_size > 1000


def test_a_property_the_real_widget_lacks_fails_to_load(tmp_path):
    """The stand-ins do not accept anything: ctkSliderWidget has no 'stepSize' (ctkSliderWidget.h)."""
    old = '<property name="singleStep">\n         <double>0.01</double>'
    assert old in UI_FILE.read_text(encoding="utf-8")
    result = load("PyQt5", tmp_path, old=old, new=old.replace("singleStep", "stepSize"))
    assert result.returncode != 0 and "setStepSize" in result.stderr
