"""Tables 2 and 3 of Zeiler & Fergus (2014), section 5.1, with an uncertainty behind every verdict.

Table 2 compares the Fig. 3 model with Krizhevsky et al.'s layout; Table 3 removes or resizes
layers of the Fig. 3 model and reports train top-1, val top-1 and val top-5 error. Each comparison
here is decided from the **per-image correctness** of the two trained networks on the same
validation images (:func:`zfcore.probes.per_image_correct`), by a paired bootstrap over those
images (:mod:`zfcore.verdicts`): one training per model is all the CPU budget of the small
profiles allows, so the interval does *not* include the variance between training seeds, and each
verdict's ``source`` says so.

The training error that can show overfitting is measured in eval mode (no dropout, no
augmentation) at the end, on a fixed subset of training images: the first
``min(n_val, n_train)`` (:func:`train_eval_indices`), the same rule as the trainer's
``train_eval_top1_error``. The running error of the last epoch (dropout and augmentation on, the
model changing while it is measured) is kept beside it, labelled as such: it lies above the
validation error for every model, so a val - train gap computed from it can never show
overfitting.

* :func:`evaluate_model` / :func:`evaluate_run`: a :class:`ModelEval` (per-image top-1 and top-5
  correctness on the validation images and on the training subset), cached by the weights' hash.
* :func:`table_row`: one line of Tables 2-3 (running and eval-mode train error, val errors).
* :data:`TABLE3_CLAIMS`: the paper's direction and words for every Table 3 row.
* :func:`ablation_verdicts`: Table 2, every Table 3 row, the depth trend, wider conv layers, wider
  fc layers overfitting; each a :class:`zfcore.verdicts.Verdict`.
* :func:`joint_bootstrap`: a bootstrap of any statistic of several models' mean correctness on
  the same images (the depth trend and the overfitting gap need more than two models).
* :func:`ablation_study`: every chosen Table 3 variant and Krizhevsky's layout trained on the
  comparison schedule and evaluated (an :class:`AblationStudy`: the tables with
  :data:`TABLE3_LABELS` and the paper's :data:`PAPER_TABLE2`, the recorded numbers, the verdicts).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from .errors import ZFCoreError
from .study import Result, cached_study
from .probes import error_pct, per_image_correct
from .profiles import Profile, get_profile
from .verdicts import Verdict, from_interval, paired_bootstrap

__all__ = ["AblationError", "ModelEval", "train_eval_indices", "evaluation_sources", "evaluate_model",
           "evaluate_run", "table_row", "TABLE3_CLAIMS", "joint_bootstrap", "ablation_verdicts",
           "describe", "verdict_numbers", "ABLATIONS_VERSION", "TABLE3_LABELS", "PAPER_TABLE2",
           "check_variants", "AblationStudy", "ablation_study", "tables_text", "verdict_text", "verdict_counts"]

#: Bump when the evaluation changes (part of the cache key).
ABLATIONS_VERSION = 1


class AblationError(ZFCoreError, ValueError):
    """Bad input to the Table 2-3 comparisons (missing models, mismatched images)."""


# The paper's direction for each Table 3 row, from section 5.1's text: +1 when it says the row is
# worse than the Fig. 3 model ("positive effect" = the variant's val top-1 error minus the full
# model's), -1 when it says the row is better. Rows where the paper finds "little difference" keep
# +1 (not better); their verdict is read with the paper's words, printed beside it.
TABLE3_CLAIMS: dict[str, tuple[int, str]] = {
    "no_layer7": (+1, "removing a fully connected layer: only a slight increase in error"),
    "no_layers6_7": (+1, "removing layers 6 and 7: only a slight increase in error"),
    "no_layers3_4": (+1, "removing layers 3 and 4: a relatively small difference"),
    "no_layers3_4_6_7": (+1, "removing layers 3, 4, 6 and 7: dramatically worse"),
    "fc6_7_2048": (+1, "resizing the fully connected layers: little difference"),
    "fc6_7_8192": (+1, "resizing the fully connected layers: little difference"),
    "conv3_4_5_wide": (-1, "wider middle convolutional layers: a useful gain"),
    "conv3_4_5_wide_fc_8192": (+1, "wider conv and wider fc layers together: over-fitting"),
}

#: Each Table 3 variant's row name, in the paper's words (section 5.1, Table 3).
TABLE3_LABELS: dict[str, str] = {
    "zf": "Our model (Fig. 3)", "no_layer7": "Removed layer 7",
    "no_layers6_7": "Removed layers 6, 7", "no_layers3_4": "Removed layers 3, 4",
    "no_layers3_4_6_7": "Removed layers 3, 4, 6, 7",
    "fc6_7_2048": "Adjust layers 6, 7: 2048 units", "fc6_7_8192": "Adjust layers 6, 7: 8192 units",
    "conv3_4_5_wide": "Adjust layers 3, 4, 5: 512, 1024, 512 maps",
    "conv3_4_5_wide_fc_8192": "Adjust layers 3, 4, 5 (wide) and 6, 7: 8192 units",
}

#: The paper's Table 2 (ImageNet 2012 validation top-1 / top-5 error, %), quoted from the paper.
PAPER_TABLE2: list[dict] = [
    {"model": "Krizhevsky et al., 1 convnet", "val_top1_error": 40.7, "val_top5_error": 18.2},
    {"model": "Krizhevsky et al. replicated, 1 convnet", "val_top1_error": 40.5, "val_top5_error": 18.1},
    {"model": "1 convnet as in Fig. 3", "val_top1_error": 38.4, "val_top5_error": 16.5},
    {"model": "5 convnets as in Fig. 3", "val_top1_error": 36.7, "val_top5_error": 15.3},
]

#: The depth rows of Table 3 (removing fc layers 6-7, conv layers 3-4, or both).
DEPTH_VARIANTS = ("zf", "no_layers6_7", "no_layers3_4", "no_layers3_4_6_7")


@dataclass
class ModelEval(Result):
    """Per-image correctness of one trained network in eval mode: ``val_top1``/``val_top5`` on
    every validation image, ``train_top1``/``train_top5`` on the fixed training subset."""

    val_top1: torch.Tensor
    val_top5: torch.Tensor
    train_top1: torch.Tensor
    train_top5: torch.Tensor

    @property
    def val_top1_error(self) -> float:
        return error_pct(self.val_top1)

    @property
    def val_top5_error(self) -> float:
        return error_pct(self.val_top5)

    @property
    def train_top1_error(self) -> float:
        return error_pct(self.train_top1)

    @property
    def train_top5_error(self) -> float:
        return error_pct(self.train_top5)


def train_eval_indices(profile: "str | Profile") -> torch.Tensor:
    """The fixed training subset whose eval-mode error shows overfitting: the first
    ``min(n_val, n_train)`` training images (as many as the validation set, so both errors have
    the same binomial noise)."""
    P = get_profile(profile)
    return torch.arange(min(P.n_val, P.n_train))


def evaluation_sources(profile: "str | Profile"):
    """The training and validation images, unaugmented: the trainer's in-memory rendering of a
    procedural split (shared with any training in this process) or the profile's data set."""
    from . import data
    from .train import rendered_split
    P = get_profile(profile)
    return tuple(rendered_split(P, s) or data.get_dataset(P, s) for s in ("train", "val"))


def evaluate_model(model: nn.Module, profile: "str | Profile", *, cache: bool = True,
                   batch_size: int = 256, device: "str | torch.device" = "cpu") -> ModelEval:
    """:class:`ModelEval` of ``model`` on the profile's validation images and training subset,
    cached by the weights' hash and the data's identity."""
    P = get_profile(profile)

    def build() -> dict:
        train_set, val_set = evaluation_sources(P)
        sub = train_eval_indices(P)
        kw = dict(batch_size=batch_size, device=device)
        v1, v5 = per_image_correct(model, val_set, k=(1, 5), **kw)
        t1, t5 = per_image_correct(model, train_set, sub, k=(1, 5), **kw)
        return ModelEval(v1, v5, t1, t5).to_dict()

    settings = {"train_images": len(train_eval_indices(P))}
    return ModelEval.from_dict(cached_study("ablation_eval", ABLATIONS_VERSION, model, P, settings, build,
                                            cache=cache))


def evaluate_run(run, **kw) -> ModelEval:
    """:func:`evaluate_model` of a :class:`zfcore.train.TrainRun`'s final weights."""
    return evaluate_model(run.model(), run.spec.profile, **kw)


def table_row(name: str, run, ev: ModelEval) -> dict:
    """One line of Tables 2-3: train top-1 error in eval mode on the training subset (the one
    that can show overfitting) and the running one of the last epoch (dropout and augmentation,
    labelled as such), val top-1 and top-5 error, and the eval-mode gap val - train."""
    f = run.final
    return {"model": name, "train_top1_error": ev.train_top1_error,
            "train_running_top1_error": f.train_top1_error,
            "val_top1_error": ev.val_top1_error, "val_top5_error": ev.val_top5_error,
            "val_minus_train_top1": ev.val_top1_error - ev.train_top1_error}


def joint_bootstrap(claim: str, correct: Mapping[str, "torch.Tensor | np.ndarray"],
                    stat: Callable[[dict[str, np.ndarray]], np.ndarray], *, n_boot: int = 2000,
                    seed: int = 0, margin: float = 0.0, unit: str = "points",
                    what: str = "validation images") -> Verdict:
    """A verdict on ``stat(means)``, where ``means[name]`` is model ``name``'s mean per-item value
    (e.g. correctness) and all models are scored on the same items: the items are resampled
    together (``n_boot`` times), so what the models share cancels. ``stat`` maps a dict of
    ``(n_boot,)`` arrays to ``(n_boot,)`` effects. Seed variance is not included."""
    arrays = {k: np.asarray(v, dtype=float) for k, v in correct.items()}
    sizes = {a.shape for a in arrays.values()}
    if len(sizes) != 1 or next(iter(sizes))[0] < 2 or len(next(iter(sizes))) != 1:
        raise AblationError(f"'{claim}': every model needs per-item values on the same >= 2 items, "
                            f"got shapes { {k: a.shape for k, a in arrays.items()} }")
    n = len(next(iter(arrays.values())))
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    boot = np.asarray(stat({k: a[idx].mean(1) for k, a in arrays.items()}), dtype=float)
    point = float(np.asarray(stat({k: np.array([a.mean()]) for k, a in arrays.items()}))[0])
    low, high = np.quantile(boot, [0.025, 0.975])
    return from_interval(claim, point, float(low), float(high), margin=margin, unit=unit,
                         source=f"paired bootstrap over {n} {what} ({n_boot} resamples; "
                                f"seed variance not included)")


def _gap_bootstrap(claim: str, model: ModelEval, control: ModelEval, *, n_boot: int, seed: int) -> Verdict:
    """Overfitting: (val - train error of ``model``) - (that of ``control``), in points; the
    validation and the training images are resampled independently, both models together."""
    rng = np.random.default_rng(seed)
    v = [np.asarray(e.val_top1, dtype=float) for e in (model, control)]
    t = [np.asarray(e.train_top1, dtype=float) for e in (model, control)]
    iv = rng.integers(0, len(v[0]), size=(n_boot, len(v[0])))
    it = rng.integers(0, len(t[0]), size=(n_boot, len(t[0])))
    # gap = val error - train error = train accuracy - val accuracy
    boot = 100 * ((t[0][it].mean(1) - v[0][iv].mean(1)) - (t[1][it].mean(1) - v[1][iv].mean(1)))
    point = 100 * ((t[0].mean() - v[0].mean()) - (t[1].mean() - v[1].mean()))
    low, high = np.quantile(boot, [0.025, 0.975])
    return from_interval(claim, float(point), float(low), float(high), unit="points",
                         source=f"paired bootstrap over {len(v[0])} validation and {len(t[0])} training "
                                f"images ({n_boot} resamples; seed variance not included)")


def ablation_verdicts(evals: Mapping[str, ModelEval], krizhevsky: ModelEval | None = None, *,
                      n_boot: int = 2000, seed: int = 0) -> list[Verdict]:
    """Every comparison of Tables 2-3 that the given models allow, each with its rule:

    * ``zf_layout_beats_krizhevsky`` (Table 2): Fig. 3's val top-1 accuracy minus Krizhevsky's;
    * ``table3_<variant>`` (each Table 3 row against the Fig. 3 model ``"zf"``): the change in
      val top-1 error signed by :data:`TABLE3_CLAIMS` (positive = the paper's direction);
    * ``removing_both_costs_most`` (depth): removing layers 3, 4, 6, 7 costs more than removing
      3-4 or 6-7 alone (its extra error over the larger of the two single removals);
    * ``wider_conv_helps``: the wide conv3-5 model's val top-1 accuracy minus Fig. 3's;
    * ``wider_fc_overfits``: the val - train (eval mode) top-1 gap of the 8192-unit fc model
      minus Fig. 3's.

    Effects are in percentage points, from paired bootstraps over the same images.
    """
    if "zf" not in evals:
        raise AblationError(f"the comparisons are against the Fig. 3 model: evals needs 'zf' (got {list(evals)})")
    zf = evals["zf"]
    kw = dict(n_boot=n_boot, seed=seed, scale=100.0, unit="points")
    out = []
    if krizhevsky is not None:
        out.append(paired_bootstrap("zf_layout_beats_krizhevsky", zf.val_top1, krizhevsky.val_top1, **kw))
    for v, ev in evals.items():
        if v == "zf" or v not in TABLE3_CLAIMS:
            continue
        sign = TABLE3_CLAIMS[v][0]
        model, control = (zf, ev) if sign > 0 else (ev, zf)
        out.append(paired_bootstrap(f"table3_{v}", model.val_top1, control.val_top1, **kw))
    if {"no_layers6_7", "no_layers3_4", "no_layers3_4_6_7"} <= set(evals):
        def extra_cost(m):  # error(both) - max(error(6-7), error(3-4)) = min(acc) - acc(both)
            return 100 * (np.minimum(m["no_layers6_7"], m["no_layers3_4"]) - m["no_layers3_4_6_7"])
        out.append(joint_bootstrap("removing_both_costs_most",
                                   {k: evals[k].val_top1 for k in ("no_layers6_7", "no_layers3_4", "no_layers3_4_6_7")},
                                   extra_cost, n_boot=n_boot, seed=seed))
    if "conv3_4_5_wide" in evals:
        out.append(paired_bootstrap("wider_conv_helps", evals["conv3_4_5_wide"].val_top1, zf.val_top1, **kw))
    if "fc6_7_8192" in evals:
        out.append(_gap_bootstrap("wider_fc_overfits", evals["fc6_7_8192"], zf, n_boot=n_boot, seed=seed))
    return out


def describe(verdict: Verdict, numbers: Mapping[str, float] | None = None) -> str:
    """One printed line: the verdict, and the model's and the control's numbers beside it."""
    extra = "" if not numbers else " (" + ", ".join(f"{k} {v:.1f}" for k, v in numbers.items()) + ")"
    return f"{verdict}{extra}"


def verdict_numbers(evals: Mapping[str, ModelEval], krizhevsky: ModelEval | None,
                    claim: str) -> dict[str, float]:
    """The numbers printed beside a verdict of :func:`ablation_verdicts` (errors in %)."""
    zf = evals["zf"]
    if claim == "zf_layout_beats_krizhevsky" and krizhevsky is not None:
        return {"Fig. 3 val top-1 error": zf.val_top1_error, "Krizhevsky": krizhevsky.val_top1_error}
    if claim.startswith("table3_") and claim[7:] in evals:
        return {f"{claim[7:]} val top-1 error": evals[claim[7:]].val_top1_error, "Fig. 3": zf.val_top1_error}
    if claim == "removing_both_costs_most":
        return {f"cost of removing {k}": evals[v].val_top1_error - zf.val_top1_error
                for k, v in (("6-7", "no_layers6_7"), ("3-4", "no_layers3_4"), ("3-4-6-7", "no_layers3_4_6_7"))}
    if claim == "wider_conv_helps":
        return {"wide conv val top-1 error": evals["conv3_4_5_wide"].val_top1_error, "Fig. 3": zf.val_top1_error}
    if claim == "wider_fc_overfits":
        w = evals["fc6_7_8192"]
        return {"8192-unit val - train gap": w.val_top1_error - w.train_top1_error,
                "Fig. 3 gap": zf.val_top1_error - zf.train_top1_error}
    return {}


def check_variants(variants) -> list[str]:
    """The Table 3 variants to train: ``"all"`` (every one of
    :data:`zfcore.models.TABLE3_VARIANTS`) or a non-empty list of their names."""
    from .models import TABLE3_VARIANTS
    chosen = list(TABLE3_VARIANTS) if variants == "all" else list(variants)
    unknown = [v for v in chosen if v not in TABLE3_VARIANTS]
    if unknown or not chosen:
        raise AblationError(f"unknown variant(s) {unknown}: choose from {list(TABLE3_VARIANTS)} or 'all'")
    return chosen


@dataclass
class AblationStudy:
    """Tables 2-3 on one schedule: ``runs`` the Table 3 variants' :class:`zfcore.train.TrainRun`
    (by variant), ``krizhevsky`` Krizhevsky's layout, ``main`` the profile's full training (the
    Fig. 3 model), and their :class:`ModelEval` (``evals``, ``krizhevsky_eval``)."""

    epochs: int
    runs: dict
    krizhevsky: object
    main: object
    evals: dict
    krizhevsky_eval: ModelEval
    train_images: int

    def budget_text(self) -> str:
        """The Fig. 3 model's validation accuracy at this table's budget and after the full schedule."""
        m = self.main
        return (f"Fig. 3 model: {m.history[min(self.epochs, len(m.history)) - 1].val_accuracy:.1f}% validation "
                f"accuracy after {self.epochs} epoch(s) (this table's budget), {m.final.val_accuracy:.1f}% after "
                f"the profile's {len(m.history)} epochs.")

    def train_error_text(self) -> str:
        """The eval-mode training error measured here beside the trainer's own, where recorded."""
        lines = [f"training error in eval mode on the first {self.train_images} training images"]
        for v, r in self.runs.items():
            t = getattr(r.final, "train_eval_top1_error", None)
            if t is not None:
                lines.append(f"  {v}: {self.evals[v].train_top1_error:.1f}% here, {t:.1f}% in the trainer's history")
        return "\n".join(lines)

    def tables(self) -> "tuple[list[dict], list[dict]]":
        """Table 2 (Krizhevsky's layout, then the Fig. 3 model if trained) and Table 3 (one row
        per variant, named by :data:`TABLE3_LABELS`), rows of :func:`table_row`."""
        table2 = [table_row("Krizhevsky et al. layout (11x11/4), 1 convnet", self.krizhevsky, self.krizhevsky_eval)]
        if "zf" in self.runs:
            table2.append(table_row("1 convnet as in Fig. 3 (7x7/2)", self.runs["zf"], self.evals["zf"]))
        table3 = [table_row(TABLE3_LABELS[v], r, self.evals[v]) for v, r in self.runs.items()]
        return table2, table3

    def numbers(self) -> dict:
        """The numbers notebook 09 records: the schedule, every model's errors (eval-mode train,
        running train, val top-1 and top-5) and, with the depth rows, the cost of each removal."""
        ev, kr = self.evals, self.krizhevsky_eval
        out = dict(schedule_epochs=self.epochs, train_eval_images=self.train_images,
                   krizhevsky_val_top1_error=kr.val_top1_error, krizhevsky_train_top1_error=kr.train_top1_error,
                   **{f"{v}_val_top1_error": e.val_top1_error for v, e in ev.items()},
                   **{f"{v}_train_top1_error": e.train_top1_error for v, e in ev.items()},
                   **{f"{v}_train_running_top1_error": r.final.train_top1_error for v, r in self.runs.items()},
                   **{f"{v}_val_top5_error": e.val_top5_error for v, e in ev.items()})
        if set(DEPTH_VARIANTS) <= set(ev):
            out.update({f"cost_removing_{k}": ev[v].val_top1_error - ev["zf"].val_top1_error
                        for k, v in (("layers6_7", "no_layers6_7"), ("layers3_4", "no_layers3_4"),
                                     ("both", "no_layers3_4_6_7"))})
        return out

    def verdicts(self) -> list[Verdict]:
        """:func:`ablation_verdicts` of these models (none without the Fig. 3 model)."""
        return ablation_verdicts(self.evals, self.krizhevsky_eval) if "zf" in self.evals else []


def ablation_study(profile: "str | Profile", variants, schedule: Mapping) -> AblationStudy:
    """Train (or load) every Table 3 variant of ``variants`` (:func:`check_variants`) and
    Krizhevsky's layout on ``schedule``, and the profile's main run; evaluate each in eval mode
    (:func:`evaluate_run`)."""
    from .train import training_run
    chosen = check_variants(variants)
    runs = {v: training_run(profile, variant=v, **schedule) for v in chosen}
    kr = training_run(profile, arch="krizhevsky", **schedule)
    main = training_run(profile)
    return AblationStudy(schedule["epochs"], runs, kr, main, {v: evaluate_run(r) for v, r in runs.items()},
                         evaluate_run(kr), len(train_eval_indices(get_profile(profile))))


def tables_text(table2: list[dict], table3: list[dict], paper: list[dict] = PAPER_TABLE2) -> str:
    """Tables 2 and 3 as printed text, the paper's Table 2 rows last (labelled "paper:")."""
    lines = [f"{'model':52s} {'train top-1':>11s} {'(running)':>9s} {'val top-1':>9s} {'val top-5':>9s}"]
    for r in table2 + table3:
        lines.append(f"{r['model']:52s} {r['train_top1_error']:11.1f} {r['train_running_top1_error']:9.1f} "
                     f"{r['val_top1_error']:9.1f} {r['val_top5_error']:9.1f}")
    for r in paper:
        lines.append(f"{'paper: ' + r['model']:52s} {'-':>11s} {'-':>9s} {r['val_top1_error']:9.1f} "
                     f"{r['val_top5_error']:9.1f}")
    return "\n".join(lines)


def verdict_text(verdict: Verdict, evals: Mapping[str, ModelEval], krizhevsky: ModelEval | None) -> str:
    """A verdict of :func:`ablation_verdicts` as printed: its rule, the verdict with the numbers
    beside it (:func:`verdict_numbers`) and, for a Table 3 row, the paper's words."""
    lines = [verdict.rule, "   " + describe(verdict, verdict_numbers(evals, krizhevsky, verdict.claim))]
    if verdict.claim.startswith("table3_"):
        lines.append("   the paper: " + TABLE3_CLAIMS[verdict.claim[len("table3_"):]][1])
    return "\n".join(lines)


def verdict_counts(verdicts) -> dict[str, int]:
    """How many verdicts came out "held", "did not hold" and "within noise"."""
    return {w: sum(v.verdict == w for v in verdicts) for w in ("held", "did not hold", "within noise")}
