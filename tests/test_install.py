"""The install is light and honest: what `import diy_nn` pulls in, how a debug build is flagged."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import diy_nn
import pytest
from diy_nn import _core
from diy_nn._buildinfo import UnoptimizedBuildWarning, warn_if_unoptimized

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_import_pulls_no_experiment_dependency():
    # matplotlib, scikit-learn and scipy are the experiments extra's, torch the tests'.
    code = (
        "import sys, diy_nn, diy_nn.gradcheck, diy_nn.summary\n"
        "heavy = [m for m in ('matplotlib', 'sklearn', 'scipy', 'torch') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_core_dependencies_are_only_numpy_safetensors_tqdm():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = sorted(d.split(">")[0].split("=")[0].split("[")[0] for d in project["dependencies"])
    assert names == ["numpy", "safetensors", "tqdm"]
    extras = project["optional-dependencies"]["experiments"]
    assert any(d.startswith("matplotlib") for d in extras)
    assert any(d.startswith("scikit-learn") for d in extras)


def test_maturin_develop_builds_the_release_profile():
    tomllib = pytest.importorskip("tomllib")
    maturin = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["maturin"]
    assert maturin.get("profile") == "release"


def test_the_tested_extension_is_optimised():
    assert _core.debug_build() is False


def test_a_debug_build_warns_once_at_import():
    with pytest.warns(UnoptimizedBuildWarning, match="maturin develop --release"):
        assert warn_if_unoptimized(lambda: True) is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_unoptimized(lambda: False) is False


def test_import_of_this_build_does_not_warn():
    proc = _python("import warnings; warnings.simplefilter('error'); import diy_nn")
    assert proc.returncode == 0, proc.stderr
    assert diy_nn.__version__
