"""Linear classifiers on fixed features and their scores (section 5 of Zeiler & Fergus, 2014).

The "new softmax" trained on top of frozen layers 1-7 (Tables 4-6) and Table 7's linear SVM and
softmax on each layer's features, with the scores the paper reports:

* :func:`fit_probe`: ``"softmax"`` (multinomial logistic regression, full-batch L-BFGS),
  ``"sigmoid"`` (one-vs-rest logistic, multi-label) or ``"svm"`` (scikit-learn's ``LinearSVC``).
  Features are standardised on the training rows; the returned :class:`LinearProbe` has the
  standardisation folded into its weights, so it applies to raw features and drops into a network
  as its last layer (:class:`zfcore.transfer.TransferNet`).
* :func:`mean_class_accuracy` (the average of per-class accuracies, as for Caltech),
  :func:`average_precision` / :func:`per_class_ap` (scikit-learn's definition, or the VOC
  devkit's with ``mode="voc"``, Table 6).
* :func:`load_batch` (images and labels of a data set at some indices, in one call where the set
  allows), :func:`per_image_correct` (a network's top-``k`` correctness per image) and
  :func:`error_pct`.
* :func:`one_thread` and :func:`standardise`, shared with the heads trained step by step in
  :mod:`zfcore.transfer.training`.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ZFCoreError
from .models import eval_mode

__all__ = [
    "ProbeError",
    "PROBE_METHODS",
    "LinearProbe",
    "fit_probe",
    "mean_class_accuracy",
    "average_precision",
    "per_class_ap",
    "load_batch",
    "per_image_correct",
    "error_pct",
    "one_thread",
    "standardise",
]

PROBE_METHODS = ("softmax", "sigmoid", "svm")


class ProbeError(ZFCoreError, ValueError):
    """Bad input to a probe or a score: unknown method, wrong shapes, labels out of range."""


# ---------------------------------------------------------------------------------------------
# Linear probes on fixed features (the new softmax of section 5; Table 7's SVM and softmax)
# ---------------------------------------------------------------------------------------------


@dataclass
class LinearProbe:
    """A linear classifier on raw features: ``scores = X @ weight.T + bias`` (``(K, D)``, ``(K,)``).

    The standardisation it was trained with is folded into ``weight`` and ``bias``.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    method: str = "softmax"

    def scores(self, X: torch.Tensor) -> torch.Tensor:
        X = torch.as_tensor(X, dtype=self.weight.dtype)
        if X.dim() != 2 or X.shape[1] != self.weight.shape[1]:
            raise ProbeError(
                f"features of shape {tuple(X.shape)} do not fit a probe trained on "
                f"{self.weight.shape[1]}-dimensional features"
            )
        return X @ self.weight.T + self.bias

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        return self.scores(X).argmax(1)

    def as_linear(self) -> nn.Linear:
        """The probe as an ``nn.Linear`` (the new last layer of :class:`TransferNet`)."""
        lin = nn.Linear(self.weight.shape[1], self.weight.shape[0])
        with torch.no_grad():
            lin.weight.copy_(self.weight.float())
            lin.bias.copy_(self.bias.float())
        return lin


@contextlib.contextmanager
def one_thread():
    """Run the enclosed work on one torch thread, restoring the thread count afterwards: a
    probe's matrices are small, and on a shared machine the synchronisation of several threads
    costs more than they save."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def standardise(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The columns' mean and standard deviation of ``X`` ``(N, D)`` (population, ``N``
    denominator); a constant column (a dead unit: its ReLU never fires) gets a standard
    deviation of 1, so standardising leaves it at 0."""
    mean = X.mean(0)
    std = X.std(0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # dead units (ReLU never fires)
    return mean, std


def fit_probe(
    X: torch.Tensor,
    y: torch.Tensor,
    method: str = "softmax",
    *,
    num_classes: int | None = None,
    reg: float = 1e-3,
    C: float = 0.01,
    max_iter: int = 200,
    seed: int = 0,
) -> LinearProbe:
    """Train a linear classifier on fixed features ``X`` ``(N, D)``.

    ``method``:

    * ``"softmax"``: multinomial logistic regression, the new softmax layer of section 5:
      minimises ``mean cross-entropy + reg/2 * ||W||^2`` by full-batch L-BFGS in double
      precision (deterministic,
      convex, so it converges to the same solution as scikit-learn's ``LogisticRegression`` with
      ``C = 1 / (reg * N)``). ``y``: class indices ``(N,)``.
    * ``"sigmoid"``: one independent logistic regression per class (multi-label, e.g. PASCAL VOC,
      Table 6). ``y``: multi-hot ``(N, K)`` or class indices (one-vs-rest).
    * ``"svm"``: scikit-learn's ``LinearSVC`` (squared hinge, one-vs-rest) with penalty ``C``, as in
      Table 7. ``y``: class indices or multi-hot.

    Features are standardised with the training rows' mean and standard deviation first.
    """
    if method not in PROBE_METHODS:
        raise ProbeError(f"method must be one of {PROBE_METHODS}, not {method!r}")
    X = torch.as_tensor(X).float()
    y = torch.as_tensor(y)
    if X.dim() != 2:
        raise ProbeError(f"features must be (N, D), not {tuple(X.shape)}")
    if y.shape[0] != X.shape[0]:
        raise ProbeError(f"{X.shape[0]} feature rows but {y.shape[0]} labels")
    if X.shape[0] < 2:
        raise ProbeError("need at least 2 training rows")
    multilabel = y.dim() == 2
    if multilabel and method == "softmax":
        raise ProbeError(
            "multi-hot labels need method='sigmoid' or 'svm' (a softmax assumes one class per "
            "image)"
        )
    K = (
        y.shape[1]
        if multilabel
        else int(num_classes if num_classes is not None else int(y.max()) + 1)
    )
    if not multilabel and (int(y.min()) < 0 or int(y.max()) >= K):
        raise ProbeError(f"labels must lie in 0..{K - 1}; got {int(y.min())}..{int(y.max())}")
    with one_thread():
        mean, std = standardise(X)
        Z = (X - mean) / std
        if method == "svm":
            W, b = _fit_svm(Z, y, K, C, max_iter, seed)
        else:
            targets = (
                y.float()
                if multilabel
                else (F.one_hot(y.long(), K).float() if method == "sigmoid" else y.long())
            )
            W, b = _fit_logistic(Z, targets, K, reg, max_iter, sigmoid=(method == "sigmoid"))
    # fold the standardisation into the weights: W (x - m) / s + b = (W / s) x + (b - (W / s) m)
    Wr = W / std
    return LinearProbe(Wr, b - Wr @ mean, method)


def _fit_logistic(
    Z: torch.Tensor, targets: torch.Tensor, K: int, reg: float, max_iter: int, sigmoid: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    # double precision: in float32 the line search stalls before the gradient is small
    Z, targets = Z.double(), (targets.double() if targets.is_floating_point() else targets)
    D = Z.shape[1]
    W = torch.zeros(K, D, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [W, b],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        logits = Z @ W.T + b
        if sigmoid:
            loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / Z.shape[0]
        else:
            loss = F.cross_entropy(logits, targets)
        loss = loss + 0.5 * reg * W.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return W.detach().float(), b.detach().float()


def _fit_svm(Z: torch.Tensor, y: torch.Tensor, K: int, C: float, max_iter: int, seed: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    Zn = Z.double().numpy()
    if y.dim() == 2:  # multi-label: one binary SVM per class
        cols = [y[:, k].numpy().astype(int) for k in range(K)]
    else:
        cols = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if cols is None:
            present = np.unique(y.numpy())
            svm = LinearSVC(C=C, max_iter=max(1000, 20 * max_iter), random_state=seed).fit(
                Zn, y.numpy()
            )
            coef, icpt = svm.coef_, svm.intercept_
            if len(present) == 2:  # scikit-learn returns one row for two classes
                coef, icpt = np.vstack([-coef, coef]), np.concatenate([-icpt, icpt])
            W = np.full((K, Zn.shape[1]), 0.0)
            b = np.full(K, -np.inf)  # classes absent from training are never predicted
            W[present] = coef
            b[present] = icpt
        else:
            W = np.zeros((K, Zn.shape[1]))
            b = np.zeros(K)
            for k, col in enumerate(cols):
                if col.min() == col.max():  # only one value in training: constant score
                    b[k] = 1.0 if col[0] else -1.0
                    continue
                svm = LinearSVC(C=C, max_iter=max(1000, 20 * max_iter), random_state=seed).fit(
                    Zn, col
                )
                W[k], b[k] = svm.coef_[0], svm.intercept_[0]
    return torch.from_numpy(W).float(), torch.from_numpy(b).float()


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def mean_class_accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """The average of per-class accuracies (section 5: "the average of the per-class accuracies"),
    over the classes present in ``labels``."""
    pred, labels = torch.as_tensor(pred).long(), torch.as_tensor(labels).long()
    if pred.shape != labels.shape or labels.numel() == 0:
        raise ProbeError(
            f"pred {tuple(pred.shape)} and labels {tuple(labels.shape)} must be equal, non-empty"
        )
    accs = [(pred[labels == c] == c).float().mean() for c in torch.unique(labels)]
    return float(torch.stack(accs).mean())


def average_precision(
    scores: "torch.Tensor | Sequence[float]",
    targets: "torch.Tensor | Sequence[int]",
    mode: str = "sklearn",
) -> float:
    """Average precision of one class from its scores and binary targets.

    ``mode="sklearn"`` is scikit-learn's ``average_precision_score``: the sum over score
    thresholds of (increase in recall) x precision, with tied scores forming one threshold.
    ``mode="voc"`` is the PASCAL VOC 2010+ devkit's (the one behind Table 6): the same sum with
    each precision replaced by the best precision at any higher recall. NaN if no positives.
    """
    if mode not in ("sklearn", "voc"):
        raise ProbeError(f"mode must be 'sklearn' or 'voc', not {mode!r}")
    s = torch.as_tensor(scores, dtype=torch.float64).flatten()
    t = torch.as_tensor(targets).flatten().double()
    if s.shape != t.shape:
        raise ProbeError(f"{s.numel()} scores but {t.numel()} targets")
    if not bool(((t == 0) | (t == 1)).all()):
        raise ProbeError("targets must be 0 or 1")
    if t.sum() == 0:
        return float("nan")
    order = torch.argsort(s, descending=True, stable=True)
    s, t = s[order], t[order]
    tp = torch.cumsum(t, 0)
    fp = torch.cumsum(1 - t, 0)
    # one threshold per distinct score: keep the last position of every run of equal scores
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    if mode == "voc":
        precision = torch.flip(torch.cummax(torch.flip(precision, [0]), 0).values, [0])
    d_recall = torch.diff(recall, prepend=torch.zeros(1, dtype=recall.dtype))
    return float((d_recall * precision).sum())


def per_class_ap(
    scores: torch.Tensor, targets: torch.Tensor, mode: str = "sklearn"
) -> torch.Tensor:
    """Per-class AP ``(K,)`` from scores ``(N, K)`` and multi-hot targets ``(N, K)`` or class
    indices ``(N,)`` (one-vs-rest)."""
    scores = torch.as_tensor(scores)
    targets = torch.as_tensor(targets)
    if targets.dim() == 1:
        targets = F.one_hot(targets.long(), scores.shape[1])
    if scores.shape != targets.shape:
        raise ProbeError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} differ")
    return torch.tensor(
        [average_precision(scores[:, k], targets[:, k], mode) for k in range(scores.shape[1])]
    )


# ---------------------------------------------------------------------------------------------
# Per-image correctness of a trained network (the items of a paired bootstrap)
# ---------------------------------------------------------------------------------------------


def load_batch(
    dataset, indices: "torch.Tensor | Sequence[int]"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of ``dataset`` at ``indices``, without augmentation, in one call where
    the set allows: a rendered procedural split (``dataset.batch(indices, epoch, augment)``, e.g.
    :func:`zfcore.train.rendered_split`), a batched ``__getitems__``, or item by item."""
    idx = [int(i) for i in torch.as_tensor(indices).flatten().tolist()]
    render = getattr(dataset, "batch", None)
    if callable(render) and hasattr(dataset, "ready"):
        x, y = render(torch.tensor(idx, dtype=torch.long), 0, False)
        return x, torch.as_tensor(y)
    getitems = getattr(dataset, "__getitems__", None)
    items = getitems(idx) if getitems is not None else [dataset[i] for i in idx]
    if (
        isinstance(items, (tuple, list))
        and len(items) == 2
        and isinstance(items[0], torch.Tensor)
        and items[0].dim() == 4
    ):
        return items[0], torch.as_tensor(items[1])
    xs, ys = zip(*items)
    return torch.stack(list(xs)), torch.as_tensor(ys)


@torch.no_grad()
def per_image_correct(
    model: nn.Module,
    dataset,
    indices: "torch.Tensor | Sequence[int] | None" = None,
    *,
    k: "int | tuple[int, ...]" = 1,
    batch_size: int = 256,
    device: "str | torch.device" = "cpu",
) -> "torch.Tensor | tuple[torch.Tensor, ...]":
    """Whether ``model`` (in eval mode: no dropout, no augmentation) ranks each image's label in
    its top ``k`` scores: a boolean ``(N,)`` for ``dataset[indices]`` (default: every image).

    These are the items of a paired comparison of two networks scored on the same images;
    ``100 * (1 - mean)`` is the top-``k`` error (%) that :func:`zfcore.train.evaluate` reports.
    The model's training/eval mode is restored afterwards. A tuple ``k=(1, 5)`` returns one
    tensor per entry from a single pass.
    """
    ks = k if isinstance(k, tuple) else (k,)
    if not ks or any(not isinstance(q, int) or q < 1 for q in ks):
        raise ProbeError(f"k must be a positive int (top-k) or a tuple of them, not {k!r}")
    n = len(dataset)
    idx = torch.arange(n) if indices is None else torch.as_tensor(indices).long().flatten()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ProbeError(f"indices must lie in 0..{n - 1} (the data set has {n} images)")
    out: list[list[torch.Tensor]] = [[] for _ in ks]
    with eval_mode(model):
        for s in range(0, len(idx), batch_size):
            x, y = load_batch(dataset, idx[s : s + batch_size])
            scores = model(x.to(device)).float().cpu()
            for q, acc in zip(ks, out):
                top = scores.topk(min(q, scores.shape[1]), dim=1).indices
                acc.append((top == y.long()[:, None]).any(1))
    res = tuple(torch.cat(a) if a else torch.zeros(0, dtype=torch.bool) for a in out)
    return res if isinstance(k, tuple) else res[0]


def error_pct(correct: torch.Tensor) -> float:
    """Error (%) from per-image correctness."""
    c = torch.as_tensor(correct)
    if c.numel() == 0:
        raise ProbeError("no images: an error rate needs at least one")
    return 100.0 * (1.0 - float(c.double().mean()))
