"""The default install has no PyTorch: everything but a learner fit works without it.

Each command runs in a fresh interpreter where ``import torch`` and ``import torchvision`` fail
(a ``sitecustomize`` on PYTHONPATH puts a blocking finder first on ``sys.meta_path``, in worker
processes too) and every attempt to import them is logged with the file that asked.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED = REPO_ROOT / "results" / "posteriors" / "smallcnn"
BLOCKED = ("torch", "torchvision")

SITECUSTOMIZE = textwrap.dedent(
    """
    import importlib.abc
    import os
    import sys
    import traceback

    BLOCKED = {blocked!r}


    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".")[0] not in BLOCKED:
                return None
            # The importing file: the innermost frame outside the import machinery and this file.
            frames = [
                f.filename
                for f in traceback.extract_stack()
                if not f.filename.startswith("<")
                and "importlib" not in f.filename
                and f.filename != __file__
            ]
            caller = frames[-1] if frames else "?"
            with open(os.environ["NO_TORCH_LOG"], "a") as log:
                log.write(f"{{fullname}}\\t{{caller}}\\n")
            raise ModuleNotFoundError(f"No module named {{fullname!r}}", name=fullname)


    sys.meta_path.insert(0, NoTorch())
    """
).format(blocked=BLOCKED)


class NoTorch:
    """Runs ``alcbench`` commands with torch and torchvision blocked, and says who tried them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.site = folder / "site"
        self.site.mkdir(parents=True)
        (self.site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.log = folder / "torch-imports.log"

    def run(self, *args: str, cwd: Path, plugin_path: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``alcbench *args`` in ``cwd``; :meth:`attempts` are then this command's."""
        self.log.write_text("")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.site), str(REPO_ROOT)]),
            "NO_TORCH_LOG": str(self.log),
            "XDG_CACHE_HOME": str(self.folder / "xdg-cache"),
            "MPLBACKEND": "Agg",
        }
        env.pop("ALCBENCH_PLUGIN_PATH", None)
        env.pop("ALCBENCH_DATA", None)
        if plugin_path is not None:
            env["ALCBENCH_PLUGIN_PATH"] = str(plugin_path)
        return subprocess.run(
            [sys.executable, "-m", "benchmark.cli", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def attempts(self) -> list[tuple[str, str]]:
        """(module, file that imported it) of every blocked import of the last command."""
        lines = self.log.read_text().splitlines()
        return [(line.split("\t")[0], line.split("\t")[1]) for line in lines]


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory: pytest.TempPathFactory) -> NoTorch:
    return NoTorch(tmp_path_factory.mktemp("no-torch"))


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "runs.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_blocker_blocks(no_torch: NoTorch, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(no_torch.site), "NO_TORCH_LOG": str(tmp_path / "log")}
    code = "import torch"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "No module named 'torch'" in result.stderr
    assert (tmp_path / "log").read_text().startswith("torch\t")


def test_list_shows_every_plugin_loaded_without_torch(no_torch: NoTorch, tmp_path: Path) -> None:
    result = no_torch.run("list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("cifar10h", "loss", "eq2", "smallcnn", "resnet50", "truth"):
        assert name in result.stdout
    assert "FAILED" not in result.stdout
    assert no_torch.attempts() == []


def test_a_plugin_file_that_imports_torch_is_listed_with_the_extra_to_install(
    no_torch: NoTorch, tmp_path: Path
) -> None:
    (tmp_path / "learners").mkdir()
    (tmp_path / "learners" / "mynet.py").write_text("import torch\n")
    result = no_torch.run("list", "learners", cwd=tmp_path, plugin_path=tmp_path)
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if "mynet" in line and "FAILED" in line]
    assert "No module named 'torch'" in line and "pip install 'alcbench[learners]'" in line


def test_run_with_a_posteriors_file_without_torch(no_torch: NoTorch, tmp_path: Path) -> None:
    posteriors = tmp_path / "posteriors.npy"
    np.save(posteriors, np.random.default_rng(0).dirichlet(np.ones(10), size=5000).astype(np.float32))
    out = tmp_path / "out"
    result = no_torch.run(
        "run",
        "--dataset",
        "cifar10h",
        "--posteriors",
        str(posteriors),
        "--strategy",
        "loss",
        "--strategy",
        "random",
        "--seeds",
        "0",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in rows(out)] == ["ok", "ok"]
    assert no_torch.attempts() == []


def test_run_with_the_shipped_smallcnn_posteriors_without_torch(no_torch: NoTorch, tmp_path: Path) -> None:
    cache = tmp_path / "posteriors-copy"
    shutil.copytree(SHIPPED, cache / "smallcnn")
    before = sorted(p.name for p in (cache / "smallcnn").iterdir())
    out = tmp_path / "out"
    result = no_torch.run(
        "run",
        "--dataset",
        "cifar10h",
        "--learner",
        "smallcnn",
        "--strategy",
        "loss",
        "--seeds",
        "0",
        "--cache",
        str(cache),
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert [(r["learner"], r["status"]) for r in rows(out)] == [("smallcnn", "ok")]
    assert sorted(p.name for p in (cache / "smallcnn").iterdir()) == before  # a hit: nothing fitted
    assert no_torch.attempts() == []


def test_a_fit_without_torch_names_the_extra(no_torch: NoTorch, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = no_torch.run(
        "fit", "--dataset", "cifar10h", "--learner", "smallcnn[epochs=1]", "--cache", str(cache), cwd=tmp_path
    )
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()
    assert len(error) == 1, result.stderr
    assert error[0].startswith("alcbench: error: learner smallcnn needs PyTorch: ")
    assert "pip install 'alcbench[learners]'" in error[0]
    # nothing stored: at most the lock folder of the attempted fit
    assert not (cache / "smallcnn").exists() or [p.name for p in (cache / "smallcnn").iterdir()] in (
        [],
        [".locks"],
    )
    assert ("torch", str(REPO_ROOT / "benchmark" / "learners" / "_torch.py")) in no_torch.attempts()


def test_cells_that_need_a_fit_without_torch_are_skipped_naming_the_extra(
    no_torch: NoTorch, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = no_torch.run(
        "run",
        "--dataset",
        "cifar10h",
        "--learner",
        "resnet50[epochs=1]",
        "--strategy",
        "loss",
        "--seeds",
        "0",
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert "Traceback" not in result.stderr
    [row] = rows(out)
    assert row["status"] == "skipped"
    assert "learner resnet50 needs PyTorch and torchvision: pip install 'alcbench[learners]'" in row["error"]


def test_torch_learners_import_without_torch_and_keep_their_cache_keys(no_torch: NoTorch) -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from benchmark.learners.resnet50 import ResNet50
        from benchmark.learners.smallcnn import SmallCNN
        from benchmark.posteriors.cache import key_params
        print(json.dumps({c.name: [key_params(c()), c.version] for c in (SmallCNN, ResNet50)}))
        assert not any(m.split(".")[0] in ("torch", "torchvision") for m in sys.modules)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(no_torch.site), "NO_TORCH_LOG": str(no_torch.folder / "keys.log")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr
    assert not (no_torch.folder / "keys.log").exists()
    import json

    found = json.loads(result.stdout)
    assert found["smallcnn"] == [
        {
            "epochs": 24,
            "width": 32,
            "folds": 2,
            "mc_samples": 10,
            "batch_size": 64,
            "lr": 0.05,
            "weight_decay": 5e-4,
            "dropout": 0.1,
            "label_smoothing": 0.2,
            "bf16": True,
            "scale": "cpu",
            "posteriors": "oof",
            "finetune_epochs": 4,
            "finetune_lr": 0.0025,
        },
        "1",
    ]
    assert found["resnet50"][1] == "1" and found["resnet50"][0]["init"] is None
