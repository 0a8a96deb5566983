"""The packaging files are in place and say what docs/PACKAGING.md promises. Nothing is built here (`make dist`
takes many minutes); these only read build.spec, the Makefile, the scripts and the desktop entry."""
from __future__ import annotations

import ast
import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "build.spec"
PACKAGING = ROOT / "packaging"


def spec_tree() -> ast.Module:
    return ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))


def assigned_strings(tree: ast.Module, name: str) -> set[str]:
    """Every string constant in the value(s) assigned (= or +=) to a module-level name."""
    found: set[str] = set()
    for node in tree.body:
        if not isinstance(node, (ast.Assign, ast.AugAssign)):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            found |= {n.value for n in ast.walk(node.value) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return found


def calls(tree: ast.Module, func: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == func]


def keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return ast.literal_eval(kw.value)
    raise KeyError(name)


def test_spec_exists_and_is_python():
    assert SPEC.is_file()
    compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec")


def test_spec_is_one_folder():
    tree = spec_tree()
    (exe,) = calls(tree, "EXE")
    assert keyword(exe, "exclude_binaries") is True  # binaries go to COLLECT, not into the executable
    assert len(calls(tree, "COLLECT")) == 1
    assert "onefile" not in SPEC.read_text(encoding="utf-8").lower()
    assert "edpn-gui" in assigned_strings(tree, "EXE_NAME")


def test_spec_bundles_weights_resources_and_package_data():
    tree = spec_tree()
    data = assigned_strings(tree, "datas")
    assert {"weights", "resources"} <= data
    assert "edpn_core" in data  # collect_data_files("edpn_core"): the LPIPS weights in edpn_core/assets
    assert "torchvision" in assigned_strings(tree, "binaries")  # deform_conv2d lives in torchvision's _C


def test_spec_excludes_unused_qt_modules():
    excluded = assigned_strings(spec_tree(), "QT_EXCLUDES")
    for module in ("QtWebEngineCore", "QtWebEngineWidgets", "QtQml", "QtQuick", "Qt3DCore", "QtDesigner",
                   "QtUiTools", "QtHelp", "QtSql", "QtTest"):
        assert module in excluded
    for module in ("QtCore", "QtGui", "QtWidgets"):  # what the app uses
        assert module not in excluded
    pruned = assigned_strings(spec_tree(), "QT_PRUNE")
    assert any("qml" in p for p in pruned) and any("libQt6Quick" in p for p in pruned)


def test_spec_imports_torch_before_qt():
    (analysis,) = calls(spec_tree(), "Analysis")
    hooks = next(kw.value for kw in analysis.keywords if kw.arg == "runtime_hooks")
    assert "pyi_rth_edpn.py" in ast.unparse(hooks)  # custom runtime hooks run before PyInstaller's PySide6 one
    hook_code = re.sub(r'""".*?"""', "", (PACKAGING / "pyi_rth_edpn.py").read_text(encoding="utf-8"), flags=re.S)
    assert "import torch" in hook_code and "PySide6" not in hook_code
    entry = (PACKAGING / "edpn_gui_main.py").read_text(encoding="utf-8")
    assert entry.index("import torch") < entry.index("edpn_gui.app")


def makefile_target(name: str) -> list[str]:
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{re.escape(name)}\s*:", line))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def test_makefile_dist_target_builds_and_self_tests():
    recipe = makefile_target("dist")
    assert any("packaging/dist.sh" in line for line in recipe)
    assert "dist" not in " ".join(makefile_target("test"))  # not part of make test
    script = (PACKAGING / "dist.sh").read_text(encoding="utf-8")
    assert "build.spec" in script and "PyInstaller" in script
    assert "--self-test" in script and "env -i" in script  # the frozen app, in a clean environment
    assert "dpkg -x" in script and "tar -C" in script
    assert "--root-owner-group" in (PACKAGING / "build_deb.sh").read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_scripts_parse():
    for script in ("dist.sh", "build_deb.sh"):
        subprocess.run(["bash", "-n", str(PACKAGING / script)], check=True)


def test_desktop_entry():
    entry = PACKAGING / "edpn-restore.desktop"
    text = entry.read_text(encoding="utf-8")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(text)
    desktop = parser["Desktop Entry"]
    assert desktop["Type"] == "Application"
    assert desktop["Exec"].split()[0] == "edpn-gui"
    assert desktop["Icon"] == "edpn-restore"  # installed as hicolor/scalable/apps/edpn-restore.svg
    assert "Graphics" in desktop["Categories"].split(";")
    assert desktop["Categories"].endswith(";")
    assert "edpn-restore.svg" in (PACKAGING / "build_deb.sh").read_text(encoding="utf-8")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF only")
def test_elfdeps_reads_needed_libraries():
    sys.path.insert(0, str(PACKAGING))
    try:
        from elfdeps import elf_needed
    finally:
        sys.path.remove(str(PACKAGING))
    import torch

    lib = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    if not lib.exists():
        pytest.skip("torch has no libtorch_cpu.so here")
    assert "libc10.so" in elf_needed(lib)
    assert elf_needed(SPEC) == []  # not an ELF file
