"""The paper's selector model: a self-supervised encoder, pretrained once per dataset, and a
linear head trained on the noisy labels.

Bernhardt et al. (2022) pretrained a ResNet-50 (3x3 stem) with BYOL on the CIFAR-10H images
themselves, without labels, then trained a linear head (dropout 0.2, SGD lr 0.01, weight decay
1e-3, 120 epochs) on the frozen encoder's features, its posteriors averaged over 10 dropout
passes and taken in-sample (the head predicts its own training samples). This learner does
the same at two scales:

- ``scale=cpu`` (default): the ``smallcnn`` network's stem and tail as the encoder (width 32,
  128-d features), BYOL sized to about 35 minutes on a 2-core CPU for 5,000 32x32 images;
- ``scale=paper``: the reference's ResNet-50 and BYOL settings (Adam lr 1e-3, batch 512,
  2,500 epochs, projector 4096/256), for a GPU.

The encoder is label-free, so it is pretrained once per set of images and shared by every
seed, noise level and label set: its features are stored in
``<artifact dir>/ssl/encoders/<key>.npz`` (with a JSON sidecar; see
:mod:`benchmark.learners._ssl_encoder`), the key hashing the image bytes and the pretraining
settings (``pretrain_seed`` included, the fit's seed and the labels not). A fit or
:meth:`~SelfSupervised.refit` whose encoder is stored trains only the NumPy head
(:mod:`benchmark.learners._linear_head`) and needs no PyTorch; pretraining needs it, and is
checkpointed so that an interrupted run resumes (see :mod:`benchmark.learners._ssl_net`).

``posteriors=insample`` (default, as the reference) trains one head on every sample;
``posteriors=oof`` cross-fits ``folds`` heads. ``pretrain_epochs``, ``pretrain_batch`` and
``pretrain_lr`` set to 0 take the scale's values (:data:`SCALES`).

An active run's re-fit (:meth:`~SelfSupervised.refit`) fine-tunes rather than retrains, as the
paper's active loop does: each head starts from the *base head* that the fit trains on the
task's initial labels (same seed and splits) and takes ``refit_epochs`` epochs (default 10) on
the current labels, a ninth of the time (0.08 s rather than 0.73 s at N=5,000 on a 2-core
CPU). The base heads are stored beside the encoder (``<artifact dir>/ssl/heads/<key>.npz``,
:mod:`benchmark.learners._ssl_heads`), so each is trained once for all cells and re-fits.
``refit_epochs`` at its default stays out of the cache key and the spec (``key_neutral``). The
head runs BLAS on one thread, so its results are the same bytes whatever the thread settings,
``--jobs`` or the load (:mod:`benchmark.learners._linear_head`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.atomic import file_lock
from benchmark.dataroot import DataNotFoundError
from benchmark.learners._linear_head import LinearHead, predict_head, train_head
from benchmark.learners._ssl_encoder import (
    INDEX,
    MAX_WEIGHT_BYTES,
    SCALES,
    BadEncoderError,
    PretrainSettings,
    encoder_dirs,
    encoder_inputs,
    find_encoder,
    index_key,
    write_encoder,
    write_index,
)
from benchmark.learners._ssl_heads import heads_key, load_or_train
from benchmark.learners._ssl_heads import store as store_heads
from benchmark.learners._torch import TorchLearner, require_torch
from benchmark.plugins import Posteriors
from benchmark.posteriors.cache_entry import canonical_json
from benchmark.posteriors.crossfit import Prediction, check_images, derived_seed
from benchmark.task import CleaningTask


class SelfSupervised(TorchLearner):
    name = "ssl"
    description = "BYOL encoder pretrained on the task's images (once), linear head with MC dropout."
    version = "1"
    #: ``refit_epochs`` came after the shipped entries and changes no fit: out of their keys.
    key_neutral = {"refit_epochs": 10}

    @dataclass(frozen=True)
    class Config:
        folds: int = 2
        posteriors: str = "insample"
        scale: str = "cpu"
        pretrain_epochs: int = 0
        pretrain_batch: int = 0
        pretrain_lr: float = 0.0
        pretrain_seed: int = 0
        width: int = 32
        head_epochs: int = 120
        head_lr: float = 0.01
        head_weight_decay: float = 1e-3
        dropout: float = 0.2
        mc_samples: int = 10
        bf16: bool = True
        refit_epochs: int = 10

        def __post_init__(self) -> None:
            problems = []
            if self.scale not in SCALES:
                problems.append(f"scale={self.scale!r} must be one of {', '.join(SCALES)}")
            for name in (
                "pretrain_epochs",
                "pretrain_batch",
                "pretrain_lr",
                "head_epochs",
                "mc_samples",
                "refit_epochs",
            ):
                if getattr(self, name) < 0:
                    problems.append(f"{name}={getattr(self, name)} must be >= 0")
            if self.pretrain_batch == 1 or self.width < 1:
                problems.append("pretrain_batch must be 0 or >= 2 (BatchNorm), width >= 1")
            if not 0.0 <= self.dropout < 1.0:
                problems.append(f"dropout={self.dropout} must lie in [0, 1)")
            if problems:
                raise ValueError("; ".join(problems))

    #: Whether :meth:`fit_predict` shows progress bars (pretraining has its own).
    _progress: bool = True
    #: The features of the last task seen: (its ``load_images``, the settings, (N, D) features,
    #: the encoder's key).
    _memo: tuple[Callable[[], Any], PretrainSettings, np.ndarray, str] | None = None
    #: The base heads last read or trained: (their key, the heads).
    _base: tuple[str, list[LinearHead]] | None = None
    #: The heads trained by the fit under way (:meth:`train` adds each).
    _trained: list[LinearHead] | None = None
    #: What the last :meth:`features` call found or made (reported in ``Posteriors.info``).
    _encoder_info: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # the in-memory features hold the task's image loader, which need not pickle
        return {k: v for k, v in self.__dict__.items() if k != "_memo"}

    def pretrain_settings(self) -> PretrainSettings:
        """The encoder's settings: this configuration with the scale's defaults filled in."""
        c = self.config
        preset = SCALES[c.scale]
        return PretrainSettings(
            scale=c.scale,
            width=c.width if c.scale == "cpu" else 0,
            epochs=c.pretrain_epochs or preset["epochs"],
            batch_size=c.pretrain_batch or preset["batch_size"],
            lr=c.pretrain_lr or preset["lr"],
            weight_decay=1e-6,
            warmup_epochs=10,
            tau=0.99,
            projector_hidden=preset["projector_hidden"],
            projector_dim=preset["projector_dim"],
            seed=c.pretrain_seed,
            bf16=c.bf16,
        )

    def require_torch(self) -> None:
        """As the base's; the paper scale's ResNet-50 needs torchvision too."""
        require_torch(self.name, torchvision=self.config.scale == "paper")

    @contextmanager
    def session(self) -> Iterator[None]:
        """No torch here: only pretraining needs it, and opens the torch session itself."""
        yield

    # ----------------------------------------------------------------------- the fit

    def fit_predict(self, task: CleaningTask, *, seed: int, progress: bool = True) -> Posteriors:
        """As the base's; the heads it trains are also stored as the task's base heads (see
        :meth:`refit`), unless they already are."""
        self._progress = progress
        self._trained = []
        try:
            posteriors = super().fit_predict(task, seed=seed, progress=progress)
            assert self._memo is not None  # set by prepare()
            labels = np.asarray(task.noisy_labels, dtype=np.int64)
            if len(self._trained) == len(self.splits(labels, seed)):
                key, inputs = heads_key(self.config, self.insample, self._memo[3], seed, task)
                store_heads(key, inputs, self._trained)
                self._base = (key, self._trained)
        finally:
            self._trained = None
        return posteriors

    def prepare(self, images: np.ndarray, task: CleaningTask) -> np.ndarray:
        """(N, D) float32 features of every image, from the stored encoder (pretrained if absent)."""
        images = super().prepare(images, task)
        features = self.features(images)
        assert self._encoder_info is not None  # set by features()
        key = self._encoder_info["encoder_key"]
        self._memo = (task.load_images, self.pretrain_settings(), features, key)  # type: ignore[assignment]
        return features

    def train(
        self, images: np.ndarray, labels: np.ndarray, seed: int, init: LinearHead | None = None
    ) -> LinearHead:
        """A linear head on ``images`` (n, D) features, trained for ``head_epochs``, or with
        ``init`` fine-tuned from it for ``refit_epochs`` (its weights and standardiser as the
        start, see :func:`train_head`); reports each epoch's loss and accuracy."""
        c = self.config
        head = train_head(
            images,
            labels,
            self.n_classes,
            epochs=c.head_epochs if init is None else c.refit_epochs,
            lr=c.head_lr,
            weight_decay=c.head_weight_decay,
            dropout=c.dropout,
            seed=seed,
            on_epoch=lambda loss, accuracy: self.epoch_done(loss=loss, accuracy=accuracy),
            init=init,
        )
        if self._trained is not None and init is None:
            self._trained.append(head)
        return head

    def predict(self, model: LinearHead, images: np.ndarray, seed: int) -> Prediction:
        """probs (n, C), the mean of ``mc_samples`` dropout passes, and those passes (T, n, C)."""
        return predict_head(model, images, mc_samples=self.config.mc_samples, seed=seed)

    def progress_steps(self) -> int:
        return int(self.config.head_epochs)

    def fit_info(self) -> dict[str, Any]:
        # the head runs in NumPy; pretraining's device and settings are in the encoder's sidecar
        return {
            "device": "cpu",
            "bf16": False,
            "threads": None,
            "epochs": self.config.head_epochs,
            **(self._encoder_info or {}),
        }

    def refit(
        self,
        task: CleaningTask,
        labels: np.ndarray,
        *,
        seed: int,
        progress: bool = False,
        from_scratch: bool = False,
    ) -> Posteriors:
        """Posteriors after fine-tuning the base heads on ``labels`` (N,), the current labels of
        an active run, over the stored features (kept on the instance between calls).

        Each head starts from the base head of its split (:meth:`base_heads`: the one
        :meth:`fit_predict` trains on ``task.noisy_labels`` with this seed and their splits)
        and takes ``refit_epochs`` epochs on the new labels of its training samples (momentum
        from zero, shuffles and masks from a seed of the fold's own), then predicts with the
        fit's seed. The paper's active loop fine-tunes its model so; from the base head a
        twelfth of a full training follows the new labels (the head's loss is convex and few
        labels change), and a re-fit depends on the labels only, not on the re-fits before it.
        On the initial labels it returns the fit's posteriors. ``from_scratch``: new heads
        trained for ``head_epochs`` on ``labels`` and their splits, as re-fits were before."""
        start = time.perf_counter()
        self._progress = progress
        labels = np.asarray(labels, dtype=np.int64)
        features, _ = self._task_features(task)
        self.n_classes = task.n_classes
        c = self.config
        heads: list[LinearHead] = []
        if from_scratch:
            splits, steps, how = self.splits(labels, seed), c.head_epochs, "scratch"
        else:
            splits = self.splits(np.asarray(task.noisy_labels, dtype=np.int64), seed)
            heads = self.base_heads(task, seed)
            unchanged = np.array_equal(labels, task.noisy_labels) or c.refit_epochs == 0
            steps, how = (0, "base") if unchanged else (c.refit_epochs, "warm")

        def one(k: int, train: np.ndarray, test: np.ndarray) -> Prediction:
            fold_seed = derived_seed(seed, k)
            if how == "scratch":
                head = self.train(features[train], labels[train], fold_seed)
            elif how == "warm":
                head = self.train(features[train], labels[train], derived_seed(fold_seed, 1), heads[k])
            else:
                head = heads[k]
            return self._predict_split(head, features[test], fold_seed)

        desc = f"{self.name} {task.name} (re-fit)"
        probs, stochastic, train_accuracy = self._run(task.n_samples, splits, progress, desc, one, steps)
        relabelled = dataclasses.replace(task, noisy_labels=labels)
        info = {**self.fit_info(), "refit": how, "refit_epochs": steps}
        return self._posteriors(relabelled, probs, stochastic, train_accuracy, start, info)

    def base_heads(self, task: CleaningTask, seed: int) -> list[LinearHead]:
        """The heads :meth:`fit_predict` trains on ``task.noisy_labels`` with ``seed``, one per
        split of :meth:`splits`: kept from the last call, else read from the store (``<key>.npz``
        in the write folder, then in each read folder; a bad file is warned about and passed
        over), else trained and stored (:func:`benchmark.learners._ssl_heads.load_or_train`)."""
        features, encoder_key = self._task_features(task)
        labels = np.asarray(task.noisy_labels, dtype=np.int64)
        key, inputs = heads_key(self.config, self.insample, encoder_key, seed, task)
        if self._base is None or self._base[0] != key:
            splits = self.splits(labels, seed)
            shape = (len(splits), features.shape[1], task.n_classes)

            def train() -> list[LinearHead]:
                self.n_classes = task.n_classes
                return [
                    self.train(features[t], labels[t], derived_seed(seed, k))
                    for k, (t, _) in enumerate(splits)
                ]

            self._base = (key, load_or_train(key, inputs, shape, train))
        return self._base[1]

    # ----------------------------------------------------------------------- the encoder

    def pretrain_epoch_done(self, epoch: int, loss: float) -> None:
        """A hook called after each pretraining epoch (0-based), once its checkpoint is written."""

    def _task_features(self, task: CleaningTask) -> tuple[np.ndarray, str]:
        """(features, encoder key) of ``task``'s images: kept from the last call on the same
        images, else :meth:`features` (which loads them, then reads or pretrains the encoder)."""
        settings = self.pretrain_settings()
        memo = self._memo
        if memo is not None and memo[0] is task.load_images and memo[1] == settings:
            return memo[2], memo[3]
        if task.load_images is None:
            raise ValueError(f"{task.name}: the {self.name} learner needs images; the task has none")
        try:
            images = np.asarray(task.load_images())
        except DataNotFoundError:
            # Without the images, the encoder stored for these samples (recorded in the index
            # when it was read or pretrained with them) still gives their features.
            found = self._indexed_features(task, settings)
            if found is None:
                raise
            features, key = found
        else:
            images = check_images(images, task)
            features = self.features(images)
            assert self._encoder_info is not None  # set by features()
            key = self._encoder_info["encoder_key"]
            write_index(task, settings, key)
        self._memo = (task.load_images, settings, features, key)
        return features, key

    def _indexed_features(self, task: CleaningTask, settings: Any) -> tuple[np.ndarray, str] | None:
        write_dir, read_dirs = encoder_dirs()
        folders = [write_dir, *read_dirs]
        indexes = [f / INDEX for f in folders if (f / INDEX).exists()]
        keys = dict.fromkeys(json.loads(i.read_text()).get(index_key(task, settings)) for i in indexes)
        # a folder's index may name an encoder stored in another folder (the shipped one)
        for path in (f / f"{key}.npz" for key in keys if key is not None for f in folders):
            if path.is_file():
                with np.load(path) as stored:
                    features = np.asarray(stored["features"], dtype=np.float32)
                if features.shape[0] == task.n_samples and np.isfinite(features).all():
                    return features, path.stem
        return None

    def features(self, images: np.ndarray) -> np.ndarray:
        """(N, D) float32 features of ``images`` (N, H, W, ch) uint8 from the stored encoder.

        Looks for ``<key>.npz`` in the write folder, then in each read folder (see
        :func:`encoder_dirs`); a file that fails its checks is reported with a warning naming it
        and passed over. When none is usable, pretrains (under a lock, so that parallel fits of
        the same encoder wait for one another) and stores the file in the write folder. Either
        way the features are those stored (float16), so a fresh fit and a cached one agree.
        """
        settings = self.pretrain_settings()
        inputs = encoder_inputs(images, settings)
        key = hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()[:20]
        write_dir, read_dirs = encoder_dirs()
        shape = (images.shape[0], settings.feature_dim)
        found = find_encoder(key, inputs, shape, [write_dir, *read_dirs])
        info: dict[str, Any] = {"encoder_key": key, "encoder_pretrained": False}
        if found is None:
            with file_lock(write_dir / f"{key}.lock"):
                found = find_encoder(key, inputs, shape, [write_dir], quiet=True)
                if found is None:
                    seconds = self._pretrain(images, settings, inputs, key, write_dir)
                    info.update(encoder_pretrained=True, encoder_pretrain_seconds=seconds)
                    found = find_encoder(key, inputs, shape, [write_dir])
        if found is None:
            raise BadEncoderError(f"the encoder {key} just stored in {write_dir} cannot be read back")
        self._encoder_info = {**info, "encoder_file": str(found[0])}
        return found[1]

    def encode_with_stored(self, images: np.ndarray, others: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(n, D) float32 features of each array of ``others`` (n, H, W, ch) uint8 from the
        encoder stored for ``images`` (read, else pretrained, as :meth:`features` does), all
        through its stored weights, so that features of new images and of ``images`` agree.
        Needs PyTorch, and an encoder stored with its weights (a CPU-scale one)."""
        self.features(images)
        assert self._encoder_info is not None  # set by features()
        path = Path(self._encoder_info["encoder_file"])
        with np.load(path) as stored:
            weights = {
                k[len("weights/") :]: np.asarray(stored[k]) for k in stored.files if k.startswith("weights/")
            }
            mean = np.asarray(stored["channel_mean"], dtype=np.float32)
            std = np.asarray(stored["channel_std"], dtype=np.float32)
        if not weights:
            raise BadEncoderError(
                f"{path}: the encoder's weights are not stored, so new images cannot be encoded"
            )
        self.require_torch()
        with TorchLearner.session(self):
            from benchmark.learners import _ssl_net

            result = _ssl_net.stored_encoder(
                self, self.pretrain_settings(), images.shape[-1], weights, mean, std
            )
            return [_ssl_net.encode(self, result, np.asarray(x)) for x in others]

    def _pretrain(
        self, images: np.ndarray, settings: PretrainSettings, inputs: dict[str, Any], key: str, folder: Path
    ) -> float:
        """BYOL on ``images``, in a torch session; stores the encoder file ``folder/<key>.npz``.
        Returns the seconds it took."""
        started = time.perf_counter()
        partial = folder / f"{key}.partial.pt"
        with TorchLearner.session(self):
            from benchmark.learners import _ssl_net

            result = _ssl_net.pretrain(
                self, images, settings, key=key, partial=partial, progress=self._progress
            )
            features = _ssl_net.encode(self, result, images)
            weights = _ssl_net.state_arrays(result.encoder)
            device, bf16 = str(self.device), self.bf16
            extra = {
                "channel_mean": result.mean.flatten().cpu().numpy(),
                "channel_std": result.std.flatten().cpu().numpy(),
            }
        if sum(w.nbytes for w in weights.values()) > MAX_WEIGHT_BYTES:
            weights = {}
        record: dict[str, Any] = {
            "key": key,
            "inputs": inputs,
            "seconds": round(time.perf_counter() - started, 1),
            "epochs": settings.epochs,
            "resumed_from_epoch": result.resumed_from,
            "final_loss": result.losses[-1] if result.losses else None,
            "losses": [round(v, 5) for v in result.losses],
            "device": device,
            "bf16": bf16,
            "weights_stored": bool(weights),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_encoder(folder / f"{key}.npz", features, weights, extra, record)
        partial.unlink(missing_ok=True)
        return float(record["seconds"])
