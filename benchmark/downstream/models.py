"""The downstream models: the classifiers on fixed features that this stage re-trains and selects
between (:class:`Model`, :data:`RETRAIN_MODELS`, :data:`CANDIDATES`), and how one is fitted and
predicts.

Downstream models fit in seconds: by default the paper's linear head on the frozen
self-supervised encoder of the ``ssl`` learner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from benchmark.learners._linear_head import predict_head, standardiser, train_head


@dataclass(frozen=True)
class Model:
    """A downstream classifier on fixed features.

    ``kind="head"``: multinomial logistic regression by SGD with input dropout (the ``ssl``
    learner's head, :mod:`benchmark.learners._linear_head`); ``kind="knn"``: the majority of
    the ``k`` nearest training samples (cosine similarity of standardised features; a tie goes
    to the class of the nearer neighbour).
    """

    name: str
    kind: str = "head"
    epochs: int = 120
    lr: float = 0.01
    weight_decay: float = 1e-3
    dropout: float = 0.2
    k: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("head", "knn"):
            raise ValueError(f"model {self.name}: kind={self.kind!r} must be head or knn")
        if self.kind == "knn" and self.k < 1:
            raise ValueError(f"model {self.name}: a knn model needs k >= 1")

    def predict(
        self, x: np.ndarray, y: np.ndarray, n_classes: int, targets: Sequence[np.ndarray], seed: int
    ) -> list[np.ndarray]:
        """Class predictions for each array of ``targets`` of a model fitted on ``x``, ``y``."""
        if self.kind == "knn":
            return [knn_predict(x, y, n_classes, t, self.k) for t in targets]
        head = train_head(
            x,
            y,
            n_classes,
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            dropout=self.dropout,
            seed=seed,
        )
        return [predict_head(head, t, mc_samples=0, seed=seed)[0].argmax(axis=1) for t in targets]


#: The model re-trained on the labels at each budget fraction: the paper's linear head (dropout
#: 0.2, SGD lr 0.01, weight decay 1e-3, 120 epochs) on the frozen self-supervised encoder.
RETRAIN = Model("ssl linear head")
#: The models ``alcbench downstream --model`` can re-train, by name.
RETRAIN_MODELS = {
    "ssl-head": RETRAIN,
    "ssl-15nn": Model("ssl 15-NN", kind="knn", k=15),
}

#: The candidates of the model-selection study: what people choose between when they tune a
#: model on frozen features (training length, learning rate, weight decay, dropout) and a second
#: model family (k nearest neighbours); close enough in accuracy that noisy labels can misorder them.
CANDIDATES = (
    Model("ssl head, 120 epochs (paper)"),
    Model("ssl head, 5 epochs", epochs=5),
    Model("ssl head, 10 epochs", epochs=10),
    Model("ssl head, 40 epochs", epochs=40),
    Model("ssl head, weight decay 0.01", weight_decay=0.01),
    Model("ssl head, weight decay 0.03", weight_decay=0.03),
    Model("ssl head, no dropout", dropout=0.0),
    Model("ssl head, dropout 0.5", dropout=0.5),
    Model("ssl head, lr 0.05", lr=0.05),
    Model("ssl head, lr 0.1, unregularised", lr=0.1, weight_decay=0.0, dropout=0.0),
    Model("ssl 15-NN", kind="knn", k=15),
    Model("ssl 50-NN", kind="knn", k=50),
)


def knn_predict(x: np.ndarray, y: np.ndarray, n_classes: int, targets: np.ndarray, k: int) -> np.ndarray:
    """(m,) the majority class of each target row's ``k`` nearest rows of ``x`` (cosine
    similarity after standardising with ``x``'s statistics); a tie goes to the class whose
    nearest member is nearer."""
    mean, std = standardiser(x)

    def unit(a: np.ndarray) -> np.ndarray:
        z = (np.asarray(a, dtype=np.float32) - mean) / std
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    train = unit(x)
    k = min(k, train.shape[0])
    # rank r of the k nearest weighs 1 + (k - r) / (k + 1)^2: below one vote, so only ties move
    weights = 1.0 + (k - np.arange(k)) / (k + 1) ** 2
    out = np.empty(targets.shape[0], dtype=np.int64)
    for start in range(0, targets.shape[0], 2048):
        sim = unit(targets[start : start + 2048]) @ train.T
        nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, nearest, axis=1), axis=1, kind="stable")
        nearest = np.take_along_axis(nearest, order, axis=1)
        votes = np.zeros((nearest.shape[0], n_classes))
        np.add.at(votes, (np.arange(nearest.shape[0])[:, None], y[nearest]), weights[None, :])
        out[start : start + 2048] = votes.argmax(axis=1)
    return out
