"""The built distribution works outside a checkout: it ships the engine's subpackages, the
built-in datasets and strategies (inside the engine, as ``benchmark/builtin/``) and the CIFAR-10H
counts, and keeps PyTorch an optional extra.

The wheel is built offline from a copy of the sources (nothing is written into the checkout).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "benchmark", "datasets", "strategies")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built without build isolation (offline): with this environment's setuptools (the dev extra's).
    pytest.importorskip("setuptools", minversion="70.1", reason="building a wheel needs setuptools >= 70.1")
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    result = subprocess.run(
        [*command, "--quiet", "-w", str(folder / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [built] = (folder / "dist").glob("alcbench-*.whl")
    return built


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def checkout_files(folder: str, pattern: str) -> set[str]:
    return {p.relative_to(REPO_ROOT / folder).as_posix() for p in (REPO_ROOT / folder).glob(pattern)}


def test_the_wheel_holds_every_engine_module(wheel: Path) -> None:
    files = wheel_files(wheel)
    for module in checkout_files("benchmark", "**/*.py"):
        assert f"benchmark/{module}" in files
    for module in ("learners/smallcnn.py", "learners/_torch.py", "perf/learners.py", "perf/simulator.py"):
        assert f"benchmark/{module}" in files


def test_the_wheel_ships_the_plugin_folders_inside_the_engine(wheel: Path) -> None:
    files = wheel_files(wheel)
    for folder in ("datasets", "strategies"):
        expected = checkout_files(folder, "*.py")
        assert expected, folder
        for name in expected:
            assert f"benchmark/builtin/{folder}/{name}" in files
    assert "benchmark/builtin/datasets/_cxr_labels.py" in files  # private helpers too
    assert "benchmark/builtin/datasets/data/cifar10h-counts.npy" in files
    assert "benchmark/builtin/datasets/data/README.md" in files  # the counts' licence
    # Never top-level packages: one called `datasets` would shadow Hugging Face's.
    assert not {f for f in files if f.split("/")[0] in ("datasets", "strategies", "tests", "results")}


def test_torch_is_an_optional_extra_of_the_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        [name] = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(z.read(name).decode())
    requires = metadata.get_all("Requires-Dist") or []
    torch = [r for r in requires if r.split(";")[0].strip().startswith(("torch", "torchvision"))]
    assert {r.split(">")[0].strip() for r in torch} == {"torch", "torchvision"}
    assert all('extra == "learners"' in r for r in torch), torch
    assert "learners" in (metadata.get_all("Provides-Extra") or [])


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (no dependencies: this venv's are on its path)."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # This venv's packages (numpy, pandas, pip ...) after the fresh venv's own, without running
    # its .pth files (so this checkout's editable install stays out).
    (site / "zz-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # A package called `datasets` beside the engine (as Hugging Face's would be) is no plugin folder.
    (site / "datasets").mkdir()
    (site / "datasets" / "__init__.py").write_text("")
    (site / "datasets" / "arrow_dataset.py").write_text('"""Not a plugin."""\n')
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--ignore-installed"]
        + [str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return venv


def run_installed(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALCBENCH_", "PYTHON"))}
    env.update(MPLBACKEND="Agg", XDG_CACHE_HOME=str(cwd / "xdg-cache"))
    return subprocess.run(
        [str(venv / "bin" / "alcbench"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_the_installed_wheel_lists_its_plugins_outside_a_checkout(installed: Path, tmp_path: Path) -> None:
    result = run_installed(installed, "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shipped = next(installed.glob("lib/python*/site-packages/benchmark/builtin"))
    assert f"from {shipped / 'datasets' / 'cifar10h.py'}" in result.stdout
    assert f"from {shipped / 'strategies' / 'eq2.py'}" in result.stdout
    for name in ("cifar10h", "noisy_cxr", "nih_airspace", "eq2", "random", "oracle", "truth", "smallcnn"):
        assert name in result.stdout
    assert "FAILED" not in result.stdout and "arrow_dataset" not in result.stdout
    assert str(REPO_ROOT) not in result.stdout


@pytest.mark.slow
def test_the_installed_wheel_runs_cifar10h_outside_a_checkout(installed: Path, tmp_path: Path) -> None:
    result = run_installed(
        installed,
        "run",
        "--dataset",
        "cifar10h",
        "--strategy",
        "eq2",
        "--strategy",
        "random",
        "--learner",
        "truth",
        "--seeds",
        "0",
        "--out",
        "OUT",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "OUT" / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["strategy"], r["status"]) for r in rows) == [("eq2[hinge=None]", "ok"), ("random", "ok")]
    assert (tmp_path / "OUT" / "leaderboard.md").is_file()
