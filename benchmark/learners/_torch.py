"""What the torch learners share: the device, bf16 autocast, and deterministic thread settings.

:class:`TorchLearner` is a :class:`~benchmark.crossfit.CrossFitLearner` whose ``session`` picks
the device (CUDA when available, else the CPU), runs every CPU core with deterministic
algorithms and restores the global torch settings afterwards. Inside a session ``self.device``
and ``self.bf16`` (the ``bf16`` parameter, where the hardware supports it) are set, and
:meth:`TorchLearner.autocast` gives the matching autocast context.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from benchmark.crossfit import CrossFitLearner
from benchmark.dataroot import DataNotFoundError

if TYPE_CHECKING:
    from torchvision.models import ResNet


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively on ``device`` (CUDA, or CPUs with AVX512-BF16)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bf16 autocast on ``device`` when ``enabled``, else a no-op autocast context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def cpu_count() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def torch_settings(device: torch.device) -> Iterator[None]:
    """Every core and deterministic algorithms for the duration of a fit, then restore.

    ``OMP_NUM_THREADS``, when set, wins: on a CPU shared with other busy processes, one thread
    per core makes OpenMP's barriers spin and a fit can run ten times slower. On CUDA, cuBLAS
    is given the fixed workspace it needs to be deterministic (read when its handle is made).
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(cpu_count())
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

    Its ``Config`` may have a ``bf16: bool`` field (bf16 autocast where supported).
    """

    #: Set by :meth:`session`: the device everything runs on, and whether bf16 autocast is on.
    device: torch.device
    bf16: bool

    @contextmanager
    def session(self) -> Iterator[None]:
        self.device = default_device()
        self.bf16 = bool(getattr(self.config, "bf16", False)) and bf16_supported(self.device)
        with torch_settings(self.device):
            yield

    def autocast(self) -> torch.autocast:
        """bf16 autocast on the session's device when ``self.bf16``."""
        return autocast(self.device, self.bf16)

    def fit_info(self) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "bf16": self.bf16,
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
        }


# --------------------------------------------------------------------------- encoders


def torchvision_resnet50(n_classes: int) -> ResNet:
    """A freshly initialised torchvision ResNet-50 with ``n_classes`` outputs (no weights read)."""
    # Imported here: torchvision takes a second to import, and listing plugins should not pay it.
    import torchvision

    return torchvision.models.resnet50(weights=None, num_classes=n_classes)


@dataclass(frozen=True)
class Encoder:
    """Backbone tensors read from an ``init`` file, keyed as in torchvision's ResNet-50."""

    path: Path
    state: dict[str, torch.Tensor]
    sha256: str


def load_encoder(path: Path) -> Encoder:
    """Read and check the state dict of a torchvision ResNet-50 encoder (e.g. SimCLR or BYOL).

    Its tensors may carry a prefix (``encoder.``, ``module.``, ...), which is found and
    stripped; extra tensors (projection heads) and the final ``fc`` layer are dropped, but every
    backbone tensor must be present with the right shape: a half-loaded encoder is an error.

    Raises:
        DataNotFoundError: the file does not exist.
        ValueError: the file is not a state dict, or lacks backbone tensors, or has tensors of
            the wrong shape; the message names the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataNotFoundError(
            f"resnet50 init file {path} not found. It should hold the state dict of a torchvision "
            "ResNet-50 encoder, saved with torch.save(model.state_dict(), path); no weights are "
            "downloaded. Use init=None to train from scratch."
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"resnet50 init file {path} cannot be read as a torch state dict: {e}") from e
    state = _find_state_dict(loaded)
    if state is None:
        raise ValueError(
            f"resnet50 init file {path} holds no state dict (a mapping of names to tensors, "
            "possibly under 'state_dict' or 'model')"
        )
    reference = {k: v for k, v in torchvision_resnet50(1000).state_dict().items() if not k.startswith("fc.")}
    prefix = max(
        _prefixes(state), key=lambda p: sum(k[len(p) :] in reference for k in state if k.startswith(p))
    )
    backbone = {
        k[len(prefix) :]: v
        for k, v in state.items()
        if k.startswith(prefix) and k[len(prefix) :] in reference
    }
    if not backbone:
        shown = ", ".join(list(state)[:5])
        raise ValueError(
            f"resnet50 init file {path} holds no torchvision ResNet-50 tensors (its first keys: {shown})"
        )
    wrong = [
        f"{k} {tuple(v.shape)} != {tuple(reference[k].shape)}"
        for k, v in backbone.items()
        if v.shape != reference[k].shape
    ]
    if wrong:
        raise ValueError(
            f"resnet50 init file {path} does not fit a ResNet-50 (prefix {prefix!r}): "
            f"{len(wrong)} tensors have the wrong shape, e.g. {'; '.join(wrong[:3])}"
        )
    missing = [k for k in reference if k not in backbone and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(
            f"resnet50 init file {path} lacks {len(missing)} of the ResNet-50 backbone tensors "
            f"(prefix {prefix!r}), e.g. {', '.join(missing[:3])}; refusing a half-initialised encoder"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Encoder(
        path=path,
        state={k: v.float() if v.is_floating_point() else v for k, v in backbone.items()},
        sha256=digest,
    )


def _find_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
        for key in ("state_dict", "model", "model_state_dict", "encoder", "network"):
            found = _find_state_dict(obj.get(key))
            if found:
                return found
    return None


def _prefixes(state: dict[str, torch.Tensor]) -> set[str]:
    """Candidate key prefixes: whatever precedes a key ending in ``conv1.weight``, and none."""
    suffix = "conv1.weight"
    return {""} | {k[: -len(suffix)] for k in state if k.endswith(suffix)}
