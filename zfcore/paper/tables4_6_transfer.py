"""Section 5.2 of Zeiler & Fergus (2014): Tables 4-6 and Fig. 9, the transfer of the
ImageNet-trained features to new data sets (notebook 10).

"We keep layers 1-7 of our ImageNet-trained model fixed and train a new softmax classifier on
top ... using the training images of the new dataset": Caltech-101 with 15 or 30 training images
per class (Table 4), Caltech-256 with 15, 30, 45, 60 (Table 5), five random draws of the training
images, the average of per-class accuracies, mean and standard deviation over the draws; against
the same architecture trained from scratch on those images only ("non-pretrained"). Fig. 9 plots
accuracy against the training images per class; Table 6 scores PASCAL VOC 2012 by per-class
average precision. Section 5 also says the pretrained features train faster.

* :func:`run_transfer` and :class:`TransferResult` (Tables 4-5, Fig. 9): for every draw and
  ``n``, a new softmax on the frozen layer-7 features against the from-scratch network (and,
  optionally, fine-tuning); :meth:`TransferResult.verdicts` decides "pretrained beats from
  scratch" at every ``n`` (:func:`draws_bootstrap`).
* :func:`training_speed` and :class:`TrainingSpeedResult`: section 5's "faster training", the
  cost of reaching the from-scratch network's accuracy (:func:`steps_to_reach`), in steps and in
  seconds, with its verdicts.
* :func:`run_multilabel` and :class:`MultiLabelResult` (Table 6): one-vs-rest classifiers on
  PASCAL VOC, per-class average precision.
* :data:`PAPER_TABLES` (the paper's published Tables 4-5), :data:`APPROACHES`,
  :func:`summary_rows` (ours and the paper's as one long table).
* :func:`describe_study`, :func:`record_prefix`: what notebook 10 prints and the prefix of its
  record keys when a profile has several data sets.

Every study is cached under ``<cache_dir>/transfer/`` by a hash of the model's weights, the data
and the configuration (:func:`study_key`, :data:`TRANSFER_VERSION`). The engine it runs on is
:mod:`zfcore.transfer` (splits, pools, the networks and their training) and
:mod:`zfcore.probes` (the new softmax and the scores).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..cache import cached
from ..features import extract_features
from ..models import model_fingerprint
from ..probes import fit_probe, load_batch, mean_class_accuracy, per_class_ap
from ..study import Result
from ..transfer import (
    TransferConfig,
    TransferData,
    TransferError,
    TransferNet,
    checks_made,
    fit_images,
    fit_to_plateau,
    make_splits,
    predict_scores,
    preloaded,
    remap_labels,
    scratch_like,
    train_head,
    trainer,
    transfer_features,
)
from .headline import MISSING, Numbers
from .verdicts import Verdict, bootstrap, from_interval

__all__ = [
    "TransferStudyError",
    "TRANSFER_VERSION",
    "SPEED_VERSION",
    "study_key",
    "std_over_draws",
    "draws_bootstrap",
    "TransferResult",
    "run_transfer",
    "REACH_TOLERANCE",
    "reaches",
    "steps_to_reach",
    "SPEED_MEASURES",
    "TrainingSpeedResult",
    "training_speed",
    "MultiLabelResult",
    "run_multilabel",
    "PAPER_TABLES",
    "APPROACHES",
    "summary_rows",
    "describe_study",
    "record_prefix",
]


class TransferStudyError(TransferError):
    """Bad input to a transfer study or its result: an approach that was not run, an unknown
    measure, too few draws for an interval."""


# ---------------------------------------------------------------------------------------------
# Cache keys and the shared pieces
# ---------------------------------------------------------------------------------------------

#: Bump when a study's computation changes (part of every cache key of section 5's studies).
TRANSFER_VERSION = 4
#: Bump when :func:`training_speed`'s computation changes (its cache key only).
SPEED_VERSION = 1


def study_key(model: nn.Module, data_key: Any, config: TransferConfig, kind: str, **extra) -> dict:
    """The cache key of one of section 5's studies (``kind``: ``"transfer"``, ``"speed"``,
    ``"layers"``, ``"multilabel"``): :data:`TRANSFER_VERSION`, the model's weights, the data,
    the whole :class:`~zfcore.transfer.TransferConfig` and the study's own settings."""
    return {
        "version": TRANSFER_VERSION,
        "kind": kind,
        "model": model_fingerprint(model),
        "data": data_key,
        "config": asdict(config),
        **extra,
    }


def std_over_draws(t: torch.Tensor) -> torch.Tensor:
    """The standard deviation over draws (rows; sample, ``n - 1``) in double precision, one
    value per column; 0 with a single draw."""
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
        raise TransferStudyError(
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


def record_prefix(result, results: Sequence) -> str:
    """The prefix of ``result``'s record keys and claims among ``results`` (one per data set of
    the profile): none for a single data set, else the data set's first word (``caltech-101_``)."""
    return "" if len(results) == 1 else result.dataset.split()[0].lower() + "_"


# ---------------------------------------------------------------------------------------------
# Tables 4-5 and Fig. 9: pretrained vs from scratch, n images per class, several draws
# ---------------------------------------------------------------------------------------------


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
    #: the from-scratch network's final training accuracy (eval mode, no augmentation),
    #: ``(draws, len(ns))``
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
        return std_over_draws(getattr(self, approach))

    def advantage(self, approach: str = "scratch") -> torch.Tensor:
        """Pretrained minus ``approach`` mean accuracy, one value per ``n``."""
        return self.mean("pretrained") - self.mean(approach)

    def class_ap(self) -> torch.Tensor:
        """The pretrained softmax's average precision per class at the largest ``n``, mean over
        draws (Table 6's layout)."""
        return self.ap[:, -1].nanmean(0)

    def numbers(self, prefix: str = "") -> dict:
        """Flat, self-describing numbers (accuracy in %) for notebook 10's record."""
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

    def ap_numbers(self) -> dict:
        """``ap_pct_<class>``: :meth:`class_ap` in %, for notebook 10's record."""
        return {f"ap_pct_{c}": 100 * float(v) for c, v in zip(self.classes, self.class_ap())}

    def scratch_fit_text(self) -> str:
        """Per ``n``, the from-scratch network's accuracy on its training images against the
        test images, its steps and why it stopped (one line per ``n``; empty if not run)."""
        if not self.has("scratch"):
            return ""
        lines = []
        for j, n in enumerate(self.ns):
            train = 100 * float(self.scratch_train[:, j].mean())
            test = 100 * float(self.mean("scratch")[j])
            steps = float(self.scratch_steps[:, j].double().mean())
            stops = ", ".join(sorted({row[j] for row in self.scratch_stopped}))
            lines.append(
                f"{self.dataset}, n = {n}: from scratch {train:.1f} % on its training images vs "
                f"{test:.1f} % on the test images, after {steps:.0f} steps on average "
                f"(stopped: {stops})"
            )
        return "\n".join(lines)

    def verdicts(
        self, approach: str = "scratch", *, prefix: str = "", n_boot: int = 2000, seed: int = 0
    ) -> list[Verdict]:
        """Tables 4-5's claim at every ``n``: the pretrained network beats ``approach`` (positive
        effect = pretrained better, in points of mean class accuracy), decided by
        :func:`draws_bootstrap` over the draws both arms ran on. Claims are named
        ``<prefix>pretrained_beats_<approach>_n<n>``."""
        if not self.has(approach) or approach not in self.correct:
            raise TransferStudyError(
                f"no per-image results for {approach!r}: run it (e.g. scratch=True)"
            )
        other = self.correct[approach]
        D = other.shape[0]
        return [
            draws_bootstrap(
                f"{prefix}pretrained_beats_{approach}_n{n}",
                self.correct["pretrained"][:D, j].float(),
                other[:, j].float(),
                self.test_labels[:D],
                n_boot=n_boot,
                seed=seed,
            )
            for j, n in enumerate(self.ns)
        ]

    def verdict_detail(self, j: int) -> str:
        """The accuracies behind the verdict at ``ns[j]``, and chance."""
        return (
            f"(pretrained {100 * float(self.mean('pretrained')[j]):.1f} % vs from scratch "
            f"{100 * float(self.mean('scratch')[j]):.1f} %, chance {100 / len(self.classes):.1f} %)"
        )

    def conclusion(self, found: Sequence[Verdict]) -> str:
        """Tables 4-5's reading in one sentence from :meth:`verdicts` (``found``)."""
        held = [n for n, v in zip(self.ns, found) if v.verdict == "held"]
        capped = sum(x == "max_steps" for row in self.scratch_stopped for x in row)
        baseline = (
            "the from-scratch network (trained until its training accuracy levelled off)"
            if not capped
            else f"the from-scratch network ({capped} of {self.scratch.numel()} runs stopped at "
            f"the step cap before their training accuracy levelled off)"
        )
        return (
            f"{self.dataset}: the pretrained network beat {baseline} beyond noise at "
            f"n = {held if held else 'no n'} of {self.ns}; at the smallest n = {self.ns[0]} the "
            f"verdict is '{found[0].verdict}' ({found[0].effect:+.1f} points)."
        )


def run_transfer(
    model: nn.Module,
    data: TransferData,
    config: TransferConfig,
    *,
    cache_dir,
    device: "str | torch.device" = "cpu",
    progress: bool = True,
) -> TransferResult:
    """Tables 4-5 and Fig. 9 on ``data``: for every draw and ``n`` in ``config.ns``, a new softmax
    on the frozen ``config.layer`` features of ``model`` (trained on the precomputed features),
    optionally fine-tuned end to end, and the same architecture trained from scratch on the same
    ``n`` images per class; all scored on the draw's test images. Cached by configuration hash.
    """
    from tqdm.auto import tqdm

    def build() -> dict:
        feats = transfer_features(
            model,
            data,
            config,
            [config.layer],
            cache_dir=cache_dir,
            device=device,
            progress=progress,
        )
        y, present = remap_labels(feats.labels)
        K = len(present)
        X = feats[config.layer]
        splits = make_splits(y, config.ns, config.draws, config.test_per_class, config.seed)
        shape = (config.draws, len(config.ns))
        pre = torch.zeros(shape)
        net_shape = (config.trained_draws, len(config.ns))
        scr = torch.zeros(net_shape) if config.scratch else torch.zeros(0, len(config.ns))
        fin = torch.zeros(net_shape) if config.fine_tune else torch.zeros(0, len(config.ns))
        ap = torch.zeros(*shape, K)
        T = len(splits[0].test)
        correct = {"pretrained": torch.zeros(*shape, T, dtype=torch.bool)}
        if config.scratch:
            correct["scratch"] = torch.zeros(*net_shape, T, dtype=torch.bool)
        if config.fine_tune:
            correct["fine_tuned"] = torch.zeros(*net_shape, T, dtype=torch.bool)
        test_labels = torch.stack([y[s.test] for s in splits])
        scr_train = torch.zeros(net_shape) if config.scratch else torch.zeros(0)
        scr_steps = torch.zeros(net_shape, dtype=torch.long) if config.scratch else torch.zeros(0)
        scr_stopped = (
            [["" for _ in config.ns] for _ in range(config.trained_draws)] if config.scratch else []
        )
        fit_time = 0.0
        jobs = [(s, j, n) for s in splits for j, n in enumerate(config.ns)]
        for s, j, n in tqdm(jobs, desc=f"transfer to {data.name}", disable=not progress):
            tr, te = s.train[n], s.test
            t0 = time.perf_counter()
            probe = fit_probe(
                X[tr],
                y[tr],
                "softmax",
                num_classes=K,
                reg=config.reg,
                max_iter=config.max_iter,
                seed=config.seed,
            )
            fit_time += time.perf_counter() - t0
            scores = probe.scores(X[te])
            pre[s.draw, j] = mean_class_accuracy(scores.argmax(1), y[te])
            correct["pretrained"][s.draw, j] = scores.argmax(1) == y[te]
            ap[s.draw, j] = per_class_ap(scores.softmax(1), y[te])
            if s.draw >= config.trained_draws or not (config.scratch or config.fine_tune):
                continue
            if j == 0:  # this draw's images, held in memory for every n (nested) and the test
                images = preloaded(data.dataset, torch.cat([s.train[max(config.ns)], te]))
            run_seed = config.seed * 1000 + s.draw * 100 + j

            def score(net: nn.Module, arm: str) -> float:
                pred = predict_scores(net, images, te, config.batch_size, device).argmax(1)
                correct[arm][s.draw, j] = pred == y[te]
                return mean_class_accuracy(pred, y[te])

            if config.fine_tune:
                net = TransferNet.from_probe(model, probe, config.layer, fine_tune=True)
                fit_images(
                    net,
                    images,
                    tr,
                    y[tr],
                    steps=config.steps(config.fine_tune_epochs, len(tr)),
                    lr=config.fine_tune_lr,
                    batch_size=config.train_batch,
                    seed=run_seed,
                    device=device,
                    progress=False,
                )
                fin[s.draw, j] = score(net, "fine_tuned")
            if config.scratch:
                net = scratch_like(model, K, seed=run_seed)
                fit = fit_to_plateau(
                    net,
                    images,
                    tr,
                    y[tr],
                    lr=config.scratch_lr,
                    min_steps=config.scratch_min_steps,
                    max_steps=config.scratch_max_steps,
                    check_every=config.scratch_check_every,
                    patience=config.scratch_patience,
                    min_gain=config.scratch_min_gain,
                    fit_accuracy=config.scratch_fit_accuracy,
                    batch_size=config.train_batch,
                    seed=run_seed,
                    shift=config.scratch_shift,
                    device=device,
                )
                scr[s.draw, j] = score(net, "scratch")
                scr_train[s.draw, j] = fit.train_accuracy
                scr_steps[s.draw, j] = fit.steps
                scr_stopped[s.draw][j] = fit.stopped
        return TransferResult(
            data.name,
            data.names_of(present),
            list(config.ns),
            pre,
            scr,
            fin,
            ap,
            int(len(splits[0].test)),
            int(X.shape[1]),
            fit_time / len(jobs),
            asdict(config),
            correct,
            test_labels,
            scr_train,
            scr_steps,
            scr_stopped,
        ).to_dict()

    key = study_key(model, data.key, config, "transfer")
    return TransferResult.from_dict(cached(cache_dir, "transfer", key, build))


# ---------------------------------------------------------------------------------------------
# Section 5's "faster training": what each arm spends to get its classifier
# ---------------------------------------------------------------------------------------------

#: Accuracies are means of per-class means stored in single precision: "reached" allows this much.
REACH_TOLERANCE = 1e-6


def reaches(accuracy: float, target: float) -> bool:
    """Is ``accuracy`` at least ``target`` (up to single-precision rounding,
    :data:`REACH_TOLERANCE`)?"""
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

    The pretrained arm is a new softmax on the fixed layer-7 features (``config["layer"]``),
    trained with the scratch network's optimiser, rate and minibatches
    (:func:`zfcore.transfer.train_head`) for ``budget`` steps and scored on the test images
    after every step; ``pretrained_steps`` is the first step from which it reaches ``target``
    and stays there (:func:`steps_to_reach`), or ``budget`` where it ends below (``reached``
    False). Its seconds are ``head_seconds`` (that training) plus ``feature_seconds[n]``, the
    one-off pass of the ``n`` x K training images through layers 1-7. The scratch arm's seconds
    are its ``scratch_steps`` and ``scratch_checks`` (training-accuracy checks of its stopping
    rule) times the seconds of one step and one check, timed in the same run
    (``scratch_step_seconds``, ``scratch_check_seconds``, per ``n``).
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
            raise TransferStudyError(
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

    def verdict(
        self, measure: str = "seconds", *, prefix: str = "", n_boot: int = 2000, seed: int = 0
    ) -> Verdict:
        """Section 5's "faster training" in ``measure``: the effect is the mean over draws and
        ``n`` of :meth:`log_ratio`, its 95 % interval a bootstrap over the draws (each draw's
        mean over ``n`` resampled: the draws are the independent units, training images and
        seeds); held if the interval lies above 0. Claim ``prefix`` +
        :data:`SPEED_MEASURES` ``[measure]``."""
        claim = SPEED_MEASURES.get(measure)
        if claim is None:
            raise TransferStudyError(
                f"measure must be one of {list(SPEED_MEASURES)}, not {measure!r}"
            )
        claim = prefix + claim
        if self.draws < 2:
            raise TransferStudyError(
                f"'{claim}' needs the scratch network on >= 2 draws for an interval over "
                f"draws, got {self.draws}: run with draws >= 2 (and network_draws >= 2 or None)"
            )
        v = bootstrap(claim, self.log_ratio(measure).mean(1).numpy(), n_boot=n_boot, seed=seed)
        misses = int((~self.reached.bool()).sum())
        if measure == "seconds":
            cost = (
                f"seconds on this machine: pretrained = extracting the n x K training images' "
                f"{self.config.get('layer', 'layer7')} features once + the softmax's steps; "
                f"scratch = its steps and training-accuracy checks, each timed here (timing noise "
                f"not included)"
            )
        else:
            cost = (
                f"Adam steps on minibatches of {self.config.get('train_batch', '?')} images, the "
                f"same optimiser and rate for both arms (feature extraction not counted)"
            )
        source = (
            f"bootstrap over {self.draws} draws (training images and seeds; each draw's mean over "
            f"n = {', '.join(map(str, self.ns))}; {n_boot} resamples) of ln(scratch / pretrained) "
            f"in {cost}; the pretrained cost is to reach the test accuracy the scratch network "
            f"ends at and stay there for the rest of {self.budget} steps; a softmax that ends "
            f"below it counts as no faster, ratio at most 1 ({misses} of {self.reached.numel()} "
            f"missed)"
        )
        return from_interval(claim, v.effect, v.low, v.high, source=source, unit="ln ratio")

    def verdicts(self, *, prefix: str = "", n_boot: int = 2000, seed: int = 0) -> list[Verdict]:
        """:meth:`verdict` in seconds (the whole cost of getting a classifier) and in steps."""
        return [self.verdict(m, prefix=prefix, n_boot=n_boot, seed=seed) for m in SPEED_MEASURES]

    def numbers(self, prefix: str = "") -> dict:
        """Flat numbers for notebook 10's record: each arm's steps and seconds (mean over draws)
        per ``n``, the pretrained arm's misses, and the geometric-mean speed-ups."""
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

    def cost_text(self) -> str:
        """Per ``n``, what each arm spent to reach the scratch network's test accuracy (means
        over draws), one line per ``n``."""

        def mean(arm: str, m: str, j: int) -> float:
            return float(self.cost(arm, m)[:, j].mean())

        return "\n".join(
            f"n = {n}: to reach {100 * float(self.target[:, j].mean()):.1f} % (the scratch "
            f"network's test accuracy), the pretrained softmax took "
            f"{mean('pretrained', 'steps', j):.0f} steps, {mean('pretrained', 'seconds', j):.2f} s "
            f"({float(self.feature_seconds[j]):.2f} s of it extracting features; it ended below "
            f"in {int((~self.reached[:, j]).sum())} of {self.draws} draws, each charged its whole "
            f"{self.budget} steps); the scratch network {mean('scratch', 'steps', j):.0f} steps, "
            f"{mean('scratch', 'seconds', j):.0f} s (means over draws)"
            for j, n in enumerate(self.ns)
        )

    def conclusion(self, found: Sequence[Verdict]) -> str:
        """Section 5's "faster training" read in one sentence from :meth:`verdicts`."""
        wall, steps = found
        said = {"held": "held", "did not hold": "did not hold", "within noise": "was within noise"}
        missed = int((~self.reached).sum())
        return (
            f"{self.dataset}: the paper's 'faster training' {said[wall.verdict]} here: with "
            f"feature extraction included, the pretrained features and a new softmax got to the "
            f"from-scratch network's test accuracy {self.speedup('seconds'):.0f}x faster in wall "
            f"time ({wall.effect:+.2f} [{wall.low:+.2f}, {wall.high:+.2f}] ln ratio; geometric "
            f"mean over draws and n) and in {self.speedup('steps'):.0f}x fewer steps "
            f"('{steps.verdict}'); {missed} of {self.reached.numel()} softmaxes ended below it and "
            f"count as no faster."
        )


def _seconds(work: Callable[[], Any], device, repeats: int = 1) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``work`` (after one untimed call)."""

    def once() -> float:
        t0 = time.perf_counter()
        work()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    once()
    return statistics.median(once() for _ in range(repeats))


def training_speed(
    model: nn.Module,
    data: TransferData,
    config: TransferConfig,
    *,
    cache_dir,
    device: "str | torch.device" = "cpu",
    progress: bool = True,
    timing_steps: int = 5,
) -> TrainingSpeedResult:
    """Section 5's "faster training" on :func:`run_transfer`'s draws (cached; its scratch runs
    are read, not trained again): for every draw the scratch network ran on and every ``n``, a
    new softmax on the frozen ``config.layer`` features, trained with the scratch network's Adam
    rate and minibatches (:func:`zfcore.transfer.train_head`, seeded as that scratch run) for
    ``config.scratch_max_steps`` steps; its cost is the first step from which its test accuracy
    reaches the one the scratch network ended at and stays there (:func:`steps_to_reach`).

    Seconds, on this machine in this run, per ``n`` on the first draw's training images: the
    pretrained arm's one-off feature extraction of the ``n`` x K training images
    (:func:`zfcore.features.extract_features`); the scratch network's Adam step on a minibatch
    with its flips and shifts (median of ``timing_steps``) and its training-accuracy check (the
    median of two). Cached by configuration hash.
    """
    from tqdm.auto import tqdm

    if not config.scratch:
        raise TransferStudyError(
            "training_speed compares with the from-scratch network: run with scratch=True"
        )

    def build() -> dict:
        result = run_transfer(
            model, data, config, cache_dir=cache_dir, device=device, progress=progress
        )
        feats = transfer_features(
            model,
            data,
            config,
            [config.layer],
            cache_dir=cache_dir,
            device=device,
            progress=progress,
        )
        y, present = remap_labels(feats.labels)
        K, X = len(present), feats[config.layer]
        splits = make_splits(y, config.ns, config.draws, config.test_per_class, config.seed)[
            : config.trained_draws
        ]
        shape = (len(splits), len(config.ns))
        pre_steps = torch.zeros(shape, dtype=torch.long)
        reached = torch.zeros(shape, dtype=torch.bool)
        head_s = torch.zeros(shape, dtype=torch.float64)
        checks = torch.tensor(
            [
                [
                    checks_made(
                        int(result.scratch_steps[d, j]),
                        config.scratch_check_every,
                        config.scratch_max_steps,
                    )
                    for j in range(len(config.ns))
                ]
                for d in range(len(splits))
            ],
            dtype=torch.long,
        )
        jobs = [(s, j, n) for s in splits for j, n in enumerate(config.ns)]
        for s, j, n in tqdm(jobs, desc=f"training speed on {data.name}", disable=not progress):
            tr, te, goal = s.train[n], s.test, float(result.scratch[s.draw, j])
            run = train_head(
                X[tr],
                y[tr],
                X[te],
                y[te],
                K,
                max_steps=config.scratch_max_steps,
                lr=config.scratch_lr,
                batch_size=config.train_batch,
                seed=config.seed * 1000 + s.draw * 100 + j,
            )
            hit = steps_to_reach(run.accuracy, goal)
            k = run.steps if hit is None else hit
            reached[s.draw, j], pre_steps[s.draw, j], head_s[s.draw, j] = (
                hit is not None,
                k,
                run.seconds[k - 1],
            )
        feat_s, step_s, check_s = (
            torch.zeros(len(config.ns), dtype=torch.float64) for _ in range(3)
        )
        images = preloaded(data.dataset, splits[0].train[max(config.ns)])
        for j, n in enumerate(config.ns):
            tr = splits[0].train[n]
            x, _ = load_batch(images, tr)
            feat_s[j] = _seconds(
                partial(
                    extract_features,
                    model,
                    (x, y[tr]),
                    [config.layer],
                    pooled_side=config.pooled_side,
                    pool=config.pool,
                    batch_size=config.batch_size,
                    device=device,
                    progress=False,
                ),
                device,
            )
            net = scratch_like(model, K, seed=config.seed)
            step = trainer(
                net,
                images,
                tr,
                y[tr],
                lr=config.scratch_lr,
                flip=True,
                shift=config.scratch_shift,
                seed=config.seed,
                device=device,
            )
            step_s[j] = _seconds(
                partial(step, torch.arange(min(config.train_batch, len(tr)))),
                device,
                repeats=timing_steps,
            )
            check_s[j] = _seconds(
                partial(predict_scores, net, images, tr, config.batch_size, device), device, 2
            )
        return TrainingSpeedResult(
            data.name,
            list(config.ns),
            config.scratch_max_steps,
            result.scratch.clone(),
            result.scratch_steps.long(),
            checks,
            pre_steps,
            reached,
            head_s,
            feat_s,
            step_s,
            check_s,
            asdict(config),
        ).to_dict()

    key = study_key(
        model, data.key, config, "speed", speed_version=SPEED_VERSION, timing_steps=timing_steps
    )
    return TrainingSpeedResult.from_dict(cached(cache_dir, "transfer", key, build))


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

    def numbers(self) -> dict:
        """``voc_mean_ap_pct``: the mean AP in %, for notebook 10's record."""
        return {"voc_mean_ap_pct": 100 * self.mean_ap}


def run_multilabel(
    model: nn.Module,
    data: TransferData,
    config: TransferConfig,
    *,
    cache_dir,
    method: str = "sigmoid",
    device: "str | torch.device" = "cpu",
    progress: bool = True,
) -> MultiLabelResult:
    """Table 6: one-vs-rest classifiers (``"sigmoid"`` logistic or ``"svm"``) on the frozen
    ``config.layer`` features of every image of ``data.dataset`` (multi-hot labels), scored by
    per-class AP on ``data.test_dataset``."""
    if data.test_dataset is None:
        raise TransferStudyError(
            f"{data.name} has no test split: multi-label data needs test_dataset"
        )
    if method not in ("sigmoid", "svm"):
        raise TransferStudyError(f"method must be 'sigmoid' or 'svm', not {method!r}")

    def build() -> dict:
        options = dict(cache_dir=cache_dir, device=device, progress=progress)
        tr = transfer_features(model, data, config, [config.layer], **options)
        te = transfer_features(model, data, config, [config.layer], test=True, **options)
        if tr.labels.dim() != 2:
            raise TransferStudyError(
                f"{data.name}: multi-label data needs multi-hot (N, K) labels, got "
                f"shape {tuple(tr.labels.shape)}"
            )
        probe = fit_probe(
            tr[config.layer],
            tr.labels,
            method,
            reg=config.reg,
            C=config.svm_C,
            max_iter=config.max_iter,
            seed=config.seed,
        )
        ap = per_class_ap(probe.scores(te[config.layer]), te.labels, mode="voc")
        return MultiLabelResult(
            data.name, list(data.classes), ap, len(tr), len(te), asdict(config)
        ).to_dict()

    key = study_key(model, [data.key, data.test_key], config, "multilabel", method=method)
    return MultiLabelResult.from_dict(cached(cache_dir, "transfer", key, build))


# ---------------------------------------------------------------------------------------------
# The paper's published Tables 4-5, beside ours
# ---------------------------------------------------------------------------------------------

#: Tables 4 and 5 of the paper: accuracy (%) as (mean, std or None) per training images per class.
PAPER_TABLES: dict[str, dict] = {
    "caltech101": {
        "table": "Table 4",
        "title": "Caltech-101",
        "ns": (15, 30),
        "scratch": ((22.8, 1.5), (46.5, 1.7)),
        "pretrained": ((83.8, 0.5), (86.5, 0.5)),
    },
    "caltech256": {
        "table": "Table 5",
        "title": "Caltech-256",
        "ns": (15, 30, 45, 60),
        "scratch": ((9.0, None), (22.5, None), (31.2, None), (38.8, None)),
        "pretrained": ((65.7, None), (70.6, None), (72.7, None), (74.2, None)),
    },
}

#: The approaches' names in the tables and figures.
APPROACHES = {
    "scratch": "non-pretrained (from scratch)",
    "pretrained": "pretrained, layers 1-7 frozen + new softmax",
    "fine_tuned": "pretrained, fine-tuned",
}


def summary_rows(results: Sequence[TransferResult], paper: dict | None = None) -> list[dict]:
    """Tables 4-5 as long rows ``{source, dataset, approach, n, accuracy_pct, std_pct}``: ours
    (mean and standard deviation over draws, in %) and, when ``paper`` is given (e.g.
    :data:`PAPER_TABLES`), the paper's rows labelled ``source="paper"``."""
    rows = []
    for r in results:
        for a in ("scratch", "pretrained", "fine_tuned"):
            if not r.has(a):
                continue
            draws = getattr(r, a).shape[0]
            for n, m, sd in zip(r.ns, r.mean(a).tolist(), r.std(a).tolist()):
                rows.append(
                    {
                        "source": "ours",
                        "dataset": r.dataset,
                        "n": n,
                        "approach": f"{APPROACHES[a]}, {draws} draw{'s' if draws > 1 else ''}",
                        "accuracy_pct": 100 * m,
                        "std_pct": 100 * sd if draws > 1 else None,
                    }
                )
    for name, t in (paper or {}).items():
        for a in ("scratch", "pretrained"):
            for n, (m, sd) in zip(t["ns"], t[a]):
                rows.append(
                    {
                        "source": "paper",
                        "dataset": f"{t['title']} ({t['table']})",
                        "approach": APPROACHES[a].replace("pretrained,", "ImageNet-pretrained,"),
                        "n": n,
                        "accuracy_pct": m,
                        "std_pct": sd,
                    }
                )
    return rows


def describe_study(data: TransferData, config: TransferConfig) -> str:
    """What notebook 10 prints about one transfer target and its protocol."""
    text = (
        f"{data.name}: {len(data.classes)} classes, {len(data.dataset)} images; n = {config.ns} "
        f"per class, {config.draws} draws, up to {config.test_per_class} test images per class"
    )
    if config.scratch:
        text += (
            f"\n  from scratch: Adam (lr {config.scratch_lr}), minibatches of "
            f"{config.train_batch} with flips and shifts of up to {config.scratch_shift} px; "
            f"{config.scratch_min_steps} to {config.scratch_max_steps} steps, stopping once the "
            f"training accuracy reaches {100 * config.scratch_fit_accuracy:.0f} % or gains less "
            f"than {100 * config.scratch_min_gain:.0f} points over {config.scratch_patience} "
            f"checks {config.scratch_check_every} steps apart; on {config.trained_draws} draws"
        )
    return text


def _transfer_headline(n: Numbers) -> str:
    sizes = n.sizes("pretrained_accuracy_pct")
    if not sizes:
        n.missing.append("pretrained_accuracy_pct_n<N>")
        return MISSING
    lo, hi = sizes[0], sizes[-1]
    text = (
        f"{lo} training images per class: {n.f(f'pretrained_accuracy_pct_n{lo}', '.1f')} ± "
        f"{n.f(f'pretrained_accuracy_std_pct_n{lo}', '.1f')} % against "
        f"{n.f(f'scratch_accuracy_pct_n{lo}', '.1f')} ± "
        f"{n.f(f'scratch_accuracy_std_pct_n{lo}', '.1f')} % from "
        "scratch (which fits its training images: "
        f"{n.f(f'scratch_train_accuracy_pct_n{lo}', '.1f')} %)"
    )
    if hi != lo:
        text += (
            f" ({hi} per class: {n.f(f'pretrained_accuracy_pct_n{hi}', '.1f')} % against "
            f"{n.f(f'scratch_accuracy_pct_n{hi}', '.1f')} %)"
        )
    return text


#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 10_transfer records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "Tables 4-5, Fig. 9: pretrained features beat training from scratch with few images",
        _transfer_headline,
    ),
]
