"""The package import diagram of hf_vssl: no cycle, and every arrow points to a lower layer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "import_graph.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_hf_vssl_imports_only_downward():
    result = _run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: no cycle, every arrow points down" in result.stdout
    assert "  training       -> " in result.stdout  # the diagram itself is printed


def _package(root: Path, files: dict[str, str]) -> Path:
    package = root / "hf_vssl"
    for name, text in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_the_check_catches_cycles_upward_arrows_and_function_local_imports(tmp_path):
    package = _package(
        tmp_path,
        {
            "models/__init__.py": "def load():\n    from hf_vssl.data import x  # hidden upward arrow\n",
            "data/__init__.py": "from ..models import y\nfrom hf_vssl.training import z\n",
            "training/__init__.py": "from hf_vssl.data import x\n",
        },
    )
    result = _run("--root", str(package), "--strict")
    assert result.returncode == 1
    out = result.stdout
    assert "cycle: data <-> models <-> training" in out
    assert "upward arrow: models -> data" in out and "upward arrow: data -> training" in out
    assert "hf_vssl/models/__init__.py:2 -> hf_vssl.data" in out
    assert "function-local hf_vssl imports (--strict)" in out


def test_a_clean_package_passes_and_an_unplaced_node_fails(tmp_path):
    clean = _package(
        tmp_path / "a", {"models/m.py": "import torch\n", "data/d.py": "from hf_vssl.models import m\n"}
    )
    assert _run("--root", str(clean), "--strict").returncode == 0
    unplaced = _package(tmp_path / "b", {"extras/e.py": "from hf_vssl.models import m\n", "models/m.py": ""})
    result = _run("--root", str(unplaced))
    assert result.returncode == 1 and "extras: not placed in any layer" in result.stdout
