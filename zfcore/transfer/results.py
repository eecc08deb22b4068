"""The results of the transfer studies (section 5) as plain dataclasses, with their verdicts.

* :class:`TransferResult`: Tables 4-5 and Fig. 9, accuracy of the pretrained softmax, the
  from-scratch network and fine-tuning per draw and ``n``; :meth:`TransferResult.verdicts`.
* :class:`LayerProbeResult`: Table 7, accuracy of a linear SVM and a softmax on each layer;
  :meth:`LayerProbeResult.verdict`.
* :class:`MultiLabelResult`: Table 6, per-class average precision on PASCAL VOC.
* :class:`TrainingSpeedResult`: section 5's "faster training", the cost of each arm's classifier
  per draw and ``n``; :func:`steps_to_reach`; :meth:`TrainingSpeedResult.verdicts`.
* :func:`draws_bootstrap`: the verdicts' two-level bootstrap over draws and test images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..probes import TransferError
from ..study import Result
from ..paper.verdicts import Verdict, bootstrap, from_interval

__all__ = [
    "draws_bootstrap",
    "TransferResult",
    "LayerProbeResult",
    "MultiLabelResult",
    "reaches",
    "steps_to_reach",
    "SPEED_MEASURES",
    "TrainingSpeedResult",
]


# ---------------------------------------------------------------------------------------------
# Tables 4-5 and Fig. 9: pretrained vs from scratch, n images per class, several draws
# ---------------------------------------------------------------------------------------------


def _std(t: torch.Tensor) -> torch.Tensor:
    t = t.double()
    return t.std(0) if t.shape[0] > 1 else torch.zeros(t.shape[1], dtype=torch.float64)


def _class_means(
    values: np.ndarray, labels: np.ndarray, rng: np.random.Generator | None, n_boot: int
) -> np.ndarray:
    """Mean of per-class means of ``values`` (one draw's test images): ``(n_boot,)`` resampled
    within each class when ``rng`` is given, else the plain value ``(1,)``."""
    out = []
    for c in np.unique(labels):
        v = values[labels == c]
        out.append(
            v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1)
            if rng is not None
            else np.array([v.mean()])
        )
    return np.mean(out, axis=0)


def draws_bootstrap(
    claim: str,
    model: "torch.Tensor | np.ndarray",
    control: "torch.Tensor | np.ndarray",
    labels: "torch.Tensor | np.ndarray",
    *,
    n_boot: int = 2000,
    seed: int = 0,
    scale: float = 100.0,
    margin: float = 0.0,
    unit: str = "points",
) -> Verdict:
    """A verdict on ``mean over draws of (model - control)`` mean class accuracy (section 5's
    score), with a 95 % interval from a two-level bootstrap: the draws (random training images
    and training seeds) resampled with replacement, and within each draw its test images
    resampled within their class (both arms on the same images, so what they share cancels).

    ``model``/``control`` are ``(draws, test images)`` per-image values (1.0 correct, or the
    mean over several layers' correctness), ``labels`` the test images' classes per draw.
    """
    a, b = np.asarray(model, dtype=float), np.asarray(control, dtype=float)
    y = np.asarray(labels)
    if a.shape != b.shape or a.ndim != 2 or y.shape != a.shape or a.shape[1] < 2:
        raise TransferError(
            f"'{claim}': model, control and labels need the same (draws, images) shape "
            f"with >= 2 images, got {a.shape}, {b.shape}, {y.shape}"
        )
    rng = np.random.default_rng(seed)
    D = a.shape[0]
    point = np.mean([_class_means(a[d] - b[d], y[d], None, 1)[0] for d in range(D)])
    per_draw = np.stack([_class_means(a[d] - b[d], y[d], rng, n_boot) for d in range(D)])  # (D, B)
    pick = rng.integers(0, D, size=(n_boot, D))
    diffs = scale * per_draw[pick, np.arange(n_boot)[:, None]].mean(1)
    low, high = np.quantile(diffs, [0.025, 0.975])
    return from_interval(
        claim,
        scale * point,
        float(low),
        float(high),
        margin=margin,
        unit=unit,
        source=f"bootstrap over {D} draw{'s' if D > 1 else ''} (training images and seeds) "
        f"and, within each, its {a.shape[1]} test images by class ({n_boot} resamples)",
    )


@dataclass
class TransferResult(Result):
    """Accuracy (the average of per-class accuracies, in [0, 1]) of each approach, one row per
    draw and one column per ``ns`` entry; ``ap`` holds the pretrained softmax's per-class
    average precision, ``(draws, len(ns), K)``. Empty tensors for approaches not run."""

    dataset: str
    classes: list[str]
    ns: list[int]
    pretrained: torch.Tensor
    scratch: torch.Tensor
    fine_tuned: torch.Tensor
    ap: torch.Tensor
    test_images: int
    feature_dim: int
    softmax_seconds: float
    config: dict = field(default_factory=dict)
    #: per test image: ``correct[approach]`` is a bool ``(draws, len(ns), test images)``
    correct: dict = field(default_factory=dict)
    #: the test images' classes per draw, ``(draws, test images)``
    test_labels: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.long))
    #: the from-scratch network's final training accuracy (eval mode, no augmentation), ``(draws, len(ns))``
    scratch_train: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    #: the from-scratch network's Adam steps and why it stopped, per draw and ``n``
    scratch_steps: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    scratch_stopped: list = field(default_factory=list)

    @property
    def draws(self) -> int:
        return int(self.pretrained.shape[0])

    def has(self, approach: str) -> bool:
        return getattr(self, approach).numel() > 0

    def mean(self, approach: str = "pretrained") -> torch.Tensor:
        """Mean over draws, one value per ``n`` (in double precision)."""
        return getattr(self, approach).double().mean(0)

    def std(self, approach: str = "pretrained") -> torch.Tensor:
        """Standard deviation over draws (sample, ``n - 1``; 0 with a single draw)."""
        return _std(getattr(self, approach))

    def advantage(self, approach: str = "scratch") -> torch.Tensor:
        """Pretrained minus ``approach`` mean accuracy, one value per ``n``."""
        return self.mean("pretrained") - self.mean(approach)

    def numbers(self, prefix: str = "") -> dict:
        """Flat, self-describing numbers (accuracy in %) for a notebook's JSON record."""
        out = {}
        for a in ("pretrained", "scratch", "fine_tuned"):
            if self.has(a):
                for n, m, s in zip(self.ns, self.mean(a).tolist(), self.std(a).tolist()):
                    out[f"{prefix}{a}_accuracy_pct_n{n}"] = 100 * m
                    out[f"{prefix}{a}_accuracy_std_pct_n{n}"] = 100 * s
        if self.has("scratch"):
            out[f"{prefix}pretrained_advantage_pct_smallest_n"] = 100 * float(
                self.advantage("scratch")[0]
            )
            if self.scratch_train.numel():
                for j, n in enumerate(self.ns):
                    out[f"{prefix}scratch_train_accuracy_pct_n{n}"] = 100 * float(
                        self.scratch_train[:, j].double().mean()
                    )
                    out[f"{prefix}scratch_steps_mean_n{n}"] = float(
                        self.scratch_steps[:, j].double().mean()
                    )
                    out[f"{prefix}scratch_stops_n{n}"] = ",".join(
                        sorted({row[j] for row in self.scratch_stopped})
                    )
        out[f"{prefix}mean_ap_pct_n{self.ns[-1]}"] = 100 * float(torch.nanmean(self.ap[:, -1]))
        out[f"{prefix}draws"] = self.draws
        out[f"{prefix}test_images_per_draw"] = self.test_images
        out[f"{prefix}softmax_fit_seconds"] = self.softmax_seconds
        return out

    def verdicts(
        self, approach: str = "scratch", *, n_boot: int = 2000, seed: int = 0
    ) -> list[Verdict]:
        """Tables 4-5's claim at every ``n``: the pretrained network beats ``approach`` (positive
        effect = pretrained better, in points of mean class accuracy), decided by
        :func:`draws_bootstrap` over the draws both arms ran on. Claims are named
        ``pretrained_beats_<approach>_n<n>``."""
        if not self.has(approach) or approach not in self.correct:
            raise TransferError(
                f"no per-image results for {approach!r}: run it (e.g. scratch=True)"
            )
        other = self.correct[approach]
        D = other.shape[0]
        return [
            draws_bootstrap(
                f"pretrained_beats_{approach}_n{n}",
                self.correct["pretrained"][:D, j].float(),
                other[:, j].float(),
                self.test_labels[:D],
                n_boot=n_boot,
                seed=seed,
            )
            for j, n in enumerate(self.ns)
        ]


# ---------------------------------------------------------------------------------------------
# Section 5's "faster training": what each arm spends to get its classifier
# ---------------------------------------------------------------------------------------------

#: Accuracies are means of per-class means stored in single precision: "reached" allows this much.
REACH_TOLERANCE = 1e-6


def reaches(accuracy: float, target: float) -> bool:
    """Is ``accuracy`` at least ``target`` (up to single-precision rounding, :data:`REACH_TOLERANCE`)?"""
    return accuracy >= target - REACH_TOLERANCE


def steps_to_reach(accuracy: Sequence[float], target: float) -> int | None:
    """The first step (counted from 1) from which the accuracy :func:`reaches` ``target`` and stays
    there: ``accuracy[k - 1]`` after step ``k`` and every later entry reach it. ``None`` if the
    last entry falls short. A lucky crossing that the curve falls back from does not count."""
    k = len(accuracy)
    while k > 0 and reaches(float(accuracy[k - 1]), target):
        k -= 1
    return None if k == len(accuracy) else k + 1


#: The two costs compared, with the claim each verdict is recorded under.
SPEED_MEASURES = {"seconds": "transfer_trains_faster", "steps": "transfer_trains_in_fewer_steps"}


@dataclass
class TrainingSpeedResult(Result):
    """Section 5's "faster training" (Tables 4-5), per draw (rows, the draws the scratch network
    ran on) and ``n`` (columns): what the pretrained arm spends to reach the test accuracy the
    from-scratch network ends at (``target``), against what the scratch network spent.

    The pretrained arm is a new softmax on the fixed layer-7 features (``config["layer"]``), trained with the
    scratch network's optimiser, rate and minibatches (:func:`~zfcore.transfer.train_head`) for
    ``budget`` steps and scored on the test images after every step; ``pretrained_steps`` is the
    first step from which it reaches ``target`` and stays there (:func:`steps_to_reach`), or
    ``budget`` where it ends below (``reached`` False).
    Its seconds are ``head_seconds`` (that training) plus ``feature_seconds[n]``, the one-off pass
    of the ``n`` x K training images through layers 1-7. The scratch arm's seconds are its
    ``scratch_steps`` and ``scratch_checks`` (training-accuracy checks of its stopping rule) times
    the seconds of one step and one check, timed in the same run (``scratch_step_seconds``,
    ``scratch_check_seconds``, per ``n``).
    """

    dataset: str
    ns: list[int]
    budget: int
    target: torch.Tensor
    scratch_steps: torch.Tensor
    scratch_checks: torch.Tensor
    pretrained_steps: torch.Tensor
    reached: torch.Tensor
    head_seconds: torch.Tensor
    feature_seconds: torch.Tensor
    scratch_step_seconds: torch.Tensor
    scratch_check_seconds: torch.Tensor
    config: dict = field(default_factory=dict)

    @property
    def draws(self) -> int:
        return int(self.target.shape[0])

    def cost(self, arm: str, measure: str) -> torch.Tensor:
        """``(draws, len(ns))`` steps or seconds of ``arm`` (``"pretrained"`` or ``"scratch"``), in
        double precision; a pretrained run that missed the target is charged its whole budget."""
        if arm not in ("pretrained", "scratch") or measure not in SPEED_MEASURES:
            raise TransferError(
                f"cost(arm, measure) takes arm 'pretrained' or 'scratch' and measure one of "
                f"{list(SPEED_MEASURES)}, not {arm!r}, {measure!r}"
            )
        if measure == "steps":
            return getattr(self, f"{arm}_steps").double()
        if arm == "pretrained":
            return self.feature_seconds.double()[None] + self.head_seconds.double()
        return (
            self.scratch_steps.double() * self.scratch_step_seconds.double()[None]
            + self.scratch_checks.double() * self.scratch_check_seconds.double()[None]
        )

    def log_ratio(self, measure: str = "seconds") -> torch.Tensor:
        """``ln(scratch cost / pretrained cost)`` per draw and ``n`` (positive: the pretrained arm
        got there faster). A run that missed the target counts as no faster: ``min(0, .)``."""
        r = torch.log(self.cost("scratch", measure) / self.cost("pretrained", measure))
        return torch.where(self.reached.bool(), r, r.clamp(max=0.0))

    def speedup(self, measure: str = "seconds") -> float:
        """The geometric mean over draws and ``n`` of ``scratch cost / pretrained cost``."""
        return float(self.log_ratio(measure).mean().exp())

    def verdict(self, measure: str = "seconds", *, n_boot: int = 2000, seed: int = 0) -> Verdict:
        """Section 5's "faster training" in ``measure``: the effect is the mean over draws and
        ``n`` of :meth:`log_ratio`, its 95 % interval a bootstrap over the draws (each draw's
        mean over ``n`` resampled: the draws are the independent units, training images and
        seeds); held if the interval lies above 0. Claim :data:`SPEED_MEASURES` ``[measure]``."""
        claim = SPEED_MEASURES.get(measure)
        if claim is None:
            raise TransferError(f"measure must be one of {list(SPEED_MEASURES)}, not {measure!r}")
        if self.draws < 2:
            raise TransferError(
                f"'{claim}' needs the scratch network on >= 2 draws for an interval over "
                f"draws, got {self.draws}: run with draws >= 2 (and network_draws >= 2 or None)"
            )
        v = bootstrap(claim, self.log_ratio(measure).mean(1).numpy(), n_boot=n_boot, seed=seed)
        misses = int((~self.reached.bool()).sum())
        if measure == "seconds":
            cost = (
                f"seconds on this machine: pretrained = extracting the n x K training images' "
                f"{self.config.get('layer', 'layer7')} features once + the softmax's steps; scratch = its "
                f"steps and training-accuracy checks, each timed here (timing noise not included)"
            )
        else:
            cost = (
                f"Adam steps on minibatches of {self.config.get('train_batch', '?')} images, the same "
                f"optimiser and rate for both arms (feature extraction not counted)"
            )
        source = (
            f"bootstrap over {self.draws} draws (training images and seeds; each draw's mean over "
            f"n = {', '.join(map(str, self.ns))}; {n_boot} resamples) of ln(scratch / pretrained) in {cost}; "
            f"the pretrained cost is to reach the test accuracy the scratch network ends at and stay there "
            f"for the rest of {self.budget} steps; a softmax that ends below it counts as no faster, ratio at most 1 "
            f"({misses} of {self.reached.numel()} missed)"
        )
        return from_interval(claim, v.effect, v.low, v.high, source=source, unit="ln ratio")

    def verdicts(self, *, n_boot: int = 2000, seed: int = 0) -> list[Verdict]:
        """:meth:`verdict` in seconds (the whole cost of getting a classifier) and in steps."""
        return [self.verdict(m, n_boot=n_boot, seed=seed) for m in SPEED_MEASURES]

    def numbers(self, prefix: str = "") -> dict:
        """Flat numbers for a notebook's JSON: each arm's steps and seconds (mean over draws) per
        ``n``, the pretrained arm's misses, and the geometric-mean speed-ups."""
        out: dict = {}
        for j, n in enumerate(self.ns):
            for arm in ("pretrained", "scratch"):
                for m in ("steps", "seconds"):
                    out[f"{prefix}{arm}_{m}_to_scratch_accuracy_mean_n{n}"] = float(
                        self.cost(arm, m)[:, j].mean()
                    )
            out[f"{prefix}pretrained_feature_seconds_n{n}"] = float(self.feature_seconds[j])
            out[f"{prefix}pretrained_missed_scratch_accuracy_n{n}"] = int(
                (~self.reached.bool()[:, j]).sum()
            )
        out[f"{prefix}pretrained_step_budget"] = self.budget
        for m in SPEED_MEASURES:
            out[f"{prefix}training_speedup_{m}_geomean"] = self.speedup(m)
        return out


# ---------------------------------------------------------------------------------------------
# Table 7: a linear SVM and a softmax on each layer's features
# ---------------------------------------------------------------------------------------------


@dataclass
class LayerProbeResult(Result):
    """Accuracy per layer (Table 7): ``accuracy[method]`` is ``(draws, len(layers))``, the average
    of per-class accuracies of that classifier on that layer's features."""

    dataset: str
    layers: list[str]
    n: int
    accuracy: dict[str, torch.Tensor]
    dims: list[int]
    test_images: int
    classes: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    #: per test image: ``correct[method]`` is a bool ``(draws, len(layers), test images)``
    correct: dict = field(default_factory=dict)
    #: the test images' classes per draw, ``(draws, test images)``
    test_labels: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.long))

    @property
    def methods(self) -> list[str]:
        return list(self.accuracy)

    def mean(self, method: str) -> torch.Tensor:
        """Mean over draws, one value per layer (in double precision)."""
        return self.accuracy[method].double().mean(0)

    def std(self, method: str) -> torch.Tensor:
        """Standard deviation over draws (sample, ``n - 1``; 0 with a single draw)."""
        return _std(self.accuracy[method])

    def monotone(self, method: str) -> bool:
        """Does the mean accuracy never fall from one layer to the next?"""
        m = self.mean(method)
        return bool((m[1:] >= m[:-1]).all())

    def drops(self, method: str) -> list[tuple[str, str, float]]:
        """``(layer, next layer, fall in mean accuracy)`` wherever it falls with depth."""
        m = self.mean(method)
        return [
            (self.layers[i], self.layers[i + 1], float(m[i] - m[i + 1]))
            for i in range(len(m) - 1)
            if m[i + 1] < m[i]
        ]

    def verdict(
        self,
        method: str,
        deep: Sequence[str] = ("layer5", "layer6", "layer7"),
        shallow: Sequence[str] = ("layer1", "layer2", "layer3"),
        *,
        n_boot: int = 2000,
        seed: int = 0,
    ) -> Verdict:
        """Table 7's claim ("higher layers generally produce more discriminative features"):
        the mean accuracy of the ``deep`` layers minus that of the ``shallow`` ones (points),
        decided by :func:`draws_bootstrap` over the draws and the test images (the same images
        for every layer). Claim ``deeper_layers_better_<method>``."""
        missing = [l for l in (*deep, *shallow) if l not in self.layers]
        if missing or not deep or not shallow:
            raise TransferError(
                f"layers {missing} were not probed (probed: {self.layers}); "
                f"pass deep=/shallow= from those"
            )
        if method not in self.correct:
            raise TransferError(
                f"no per-image results for {method!r}; methods: {list(self.correct)}"
            )
        c = self.correct[method].float()
        pick = lambda ls: c[:, [self.layers.index(l) for l in ls]].mean(1)  # noqa: E731
        return draws_bootstrap(
            f"deeper_layers_better_{method}",
            pick(deep),
            pick(shallow),
            self.test_labels,
            n_boot=n_boot,
            seed=seed,
        )


# ---------------------------------------------------------------------------------------------
# Table 6: multi-label classification scored by per-class average precision (PASCAL VOC)
# ---------------------------------------------------------------------------------------------


@dataclass
class MultiLabelResult(Result):
    """Per-class average precision (VOC devkit definition) of one-vs-rest classifiers on the
    frozen ``layer`` features (Table 6's layout: one column per class, and the mean)."""

    dataset: str
    classes: list[str]
    ap: torch.Tensor
    train_images: int
    test_images: int
    config: dict = field(default_factory=dict)

    @property
    def mean_ap(self) -> float:
        return float(torch.nanmean(self.ap))
