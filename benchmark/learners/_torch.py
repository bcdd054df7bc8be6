"""What the torch learners share: the device, bf16 autocast, and deterministic thread settings.

:class:`TorchLearner` is a :class:`~benchmark.posteriors.crossfit.CrossFitLearner` whose ``session`` picks
the device (CUDA when available, else the CPU), runs with deterministic algorithms on the
CPU threads it is given (:func:`benchmark.threads.fit_threads`: every core, or its share of
them while cells run in parallel) and restores the global torch settings afterwards. Inside a
session ``self.device`` and ``self.bf16`` (the ``bf16`` parameter, where the hardware supports
it) are set, and :meth:`TorchLearner.autocast` gives the matching autocast context.

PyTorch is an optional extra (``pip install 'alcbench[learners]'``). This module imports it
only once a fit starts, so a torch learner is listed, configured and served from the posterior
cache without it; each learner keeps its torch code in a private module beside it
(``_smallcnn_net.py``, ``_resnet50_net.py``) that its methods import. A fit without PyTorch
stops at the start of its session with :class:`MissingExtraError`, which names the extra.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from benchmark.dataroot import DataNotFoundError
from benchmark.posteriors.crossfit import CrossFitLearner
from benchmark.threads import fit_threads

if TYPE_CHECKING:
    import torch

#: The command that installs what the torch learners need (PyTorch and torchvision).
INSTALL_LEARNERS = "pip install 'alcbench[learners]'"


class MissingExtraError(DataNotFoundError):
    """A learner needs PyTorch (the ``learners`` extra), which is not installed.

    Like absent images, it leaves a fit undone: the runner reports the cells that needed the
    fit as skipped, with this message, and ``alcbench fit`` prints it as its error.
    """


def require_torch(learner: str, *, torchvision: bool = False) -> None:
    """Imports torch (and torchvision when ``torchvision``); MissingExtraError naming the extra
    and the command that installs it when that fails."""
    what = "PyTorch and torchvision" if torchvision else "PyTorch"
    for module in ("torch", "torchvision") if torchvision else ("torch",):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingExtraError(f"learner {learner} needs {what}: {INSTALL_LEARNERS} ({exc})") from exc


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively on ``device`` (CUDA, or CPUs with AVX512-BF16)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bf16 autocast on ``device`` when ``enabled``, else a no-op autocast context."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@contextmanager
def torch_settings(device: torch.device) -> Iterator[None]:
    """The CPU threads of :func:`benchmark.threads.fit_threads` (every core, the cell's share
    of them, or ``OMP_NUM_THREADS``'s) and deterministic algorithms for the duration of a fit,
    then restore. On CUDA, cuBLAS is given the fixed workspace it needs to be deterministic
    (read when its handle is made).
    """
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    wanted = fit_threads() if device.type == "cpu" else None
    if wanted is not None:
        torch.set_num_threads(wanted)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # On CUDA some kernels have no deterministic version; warn rather than fail there.
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


class TorchLearner(CrossFitLearner):
    """A cross-fitted learner in torch: a session on the default device with torch settings.

    Its ``Config`` may have a ``bf16: bool`` field (bf16 autocast where supported). Its session
    starts with :func:`require_torch`; a subclass that overrides ``session`` and does torch work
    before ``super().session()`` calls it first.
    """

    #: Whether a fit needs torchvision as well as torch.
    needs_torchvision: ClassVar[bool] = False
    #: Set by :meth:`session`: the device everything runs on, and whether bf16 autocast is on.
    device: torch.device
    bf16: bool

    def require_torch(self) -> None:
        """MissingExtraError, naming the extra, unless what a fit needs is installed."""
        require_torch(self.name, torchvision=self.needs_torchvision)

    @contextmanager
    def session(self) -> Iterator[None]:
        self.require_torch()
        self.device = default_device()
        self.bf16 = bool(getattr(self.config, "bf16", False)) and bf16_supported(self.device)
        with torch_settings(self.device):
            yield

    def autocast(self) -> torch.autocast:
        """bf16 autocast on the session's device when ``self.bf16``."""
        return autocast(self.device, self.bf16)

    def fit_info(self) -> dict[str, Any]:
        import torch

        return {
            "device": str(self.device),
            "bf16": self.bf16,
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
        }

    def display_name(self) -> str:
        """The learner in words, how its posteriors are made (always for the CNN family, else
        when off the default), the training views averaged and any other parameter off its
        default: ``"vanilla CNN, out-of-fold"``, ``"co-teaching CNNs, in-sample, 8 views"``,
        ``"ResNet-50"``, ``"self-supervised (BYOL) + linear head"``."""
        from benchmark.params import changed_params

        kinds = {
            "smallcnn": "vanilla CNN",
            "coteaching": "co-teaching CNNs",
            "elr": "CNN with ELR",
            "resnet50": "ResNet-50",
            "ssl": "self-supervised (BYOL) + linear head",
        }
        parts = [kinds.get(self.name, self.name)]
        posteriors = self.params.get("posteriors")
        default = self.parameters.get("posteriors", [None])[0]
        if posteriors in ("insample", "oof") and (
            (self.name in kinds and "views" in self.params) or posteriors != default
        ):
            parts.append("in-sample" if posteriors == "insample" else "out-of-fold")
        if int(self.params.get("views") or 1) > 1:
            parts.append(f"{self.params['views']} views")
        return ", ".join(parts + changed_params(self, "posteriors", "views"))
