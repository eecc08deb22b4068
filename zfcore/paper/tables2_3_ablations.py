"""Section 5.1 of Zeiler & Fergus (2014): Tables 2 and 3, architectures compared (notebook 09).

Converged networks, with seed variance.

Table 2 compares the Fig. 3 model with Krizhevsky et al.'s layout; Table 3 removes or resizes
layers of the Fig. 3 model and reports train top-1, val top-1 and val top-5 error. Every network
here is trained on the profile's complete schedule with several seeds and recorded once
(:mod:`zfcore.paper.comparisons`); each comparison is decided from the **per-image
correctness** of the networks on the same validation images by a hierarchical bootstrap (seeds of
each network, then the images: :func:`zfcore.paper.verdicts.hierarchical_bootstrap`), so every
interval includes the variance between trainings. Tables show the mean and the standard
deviation over seeds.

The training error that can show overfitting is measured in eval mode (no dropout, no
augmentation) at the end, on a fixed subset of training images
(:func:`zfcore.paper.comparisons.train_eval_indices`). The running error of the last epoch
(dropout and augmentation on) is kept beside it, labelled as such: it lies above the validation
error for every model, so a gap computed from it can never show overfitting. Where the profile's
training set is too large for any network to overfit, the same comparison is repeated on a
quarter of it, for as many steps as the main model
(:data:`zfcore.paper.comparisons.SMALL_TRAIN_VARIANTS`,
:func:`zfcore.paper.comparisons.small_train_overrides`).

"Little difference" (the size of the fully connected layers) is an equivalence claim with a
margin fixed before the numbers were seen: :data:`EQUIVALENCE_MARGIN` points of validation top-1
error (:func:`zfcore.paper.verdicts.equivalence`), so that it can fail.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import ZFCoreError
from ..models import TABLE3_VARIANTS
from ..profiles import Profile, get_profile
from ..train import comparison_overrides, training_run
from .comparisons import (
    NetworkRecord,
    network_arrays,
    network_records,
    study_cost,
    study_jobs,
)
from .headline import NOT_RECORDED, Numbers
from .verdicts import Verdict, equivalence, hierarchical_bootstrap

__all__ = [
    "AblationError",
    "TABLE3_CLAIMS",
    "TABLE3_LABELS",
    "PAPER_TABLE2",
    "EQUIVALENCE_MARGIN",
    "check_variants",
    "ablation_verdicts",
    "AblationStudy",
    "ablation_study",
    "tables_text",
    "verdict_text",
    "verdict_counts",
    "study_provenance",
]


class AblationError(ZFCoreError, ValueError):
    """Bad input to the Table 2-3 comparisons (missing networks, unknown variants)."""


#: The margin of the "little difference" claims, in points of validation top-1 error, fixed
#: before any network was trained.
EQUIVALENCE_MARGIN = 1.0

# The paper's reading of each Table 3 row (section 5.1), against the Fig. 3 model: "worse" (the
# variant's val top-1 error is higher: effect = its error minus Fig. 3's), "better" (effect =
# Fig. 3's error minus the variant's) or "same" (no more than EQUIVALENCE_MARGIN apart).
TABLE3_CLAIMS: dict[str, tuple[str, str]] = {
    "no_layer7": ("worse", "removing a fully connected layer: only a slight increase in error"),
    "no_layers6_7": ("worse", "removing layers 6 and 7: only a slight increase in error"),
    "no_layers3_4": ("worse", "removing layers 3 and 4: a relatively small difference"),
    "no_layers3_4_6_7": ("worse", "removing layers 3, 4, 6 and 7: dramatically worse"),
    "fc6_7_2048": ("same", "resizing the fully connected layers: little difference"),
    "fc6_7_8192": ("same", "resizing the fully connected layers: little difference"),
    "conv3_4_5_wide": ("better", "wider middle convolutional layers: a useful gain"),
    "conv3_4_5_wide_fc_8192": ("worse", "wider conv and wider fc layers together: over-fitting"),
}

#: Each Table 3 variant's row name, in the paper's words (section 5.1, Table 3).
TABLE3_LABELS: dict[str, str] = {
    "zf": "Our model (Fig. 3)",
    "no_layer7": "Removed layer 7",
    "no_layers6_7": "Removed layers 6, 7",
    "no_layers3_4": "Removed layers 3, 4",
    "no_layers3_4_6_7": "Removed layers 3, 4, 6, 7",
    "fc6_7_2048": "Adjust layers 6, 7: 2048 units",
    "fc6_7_8192": "Adjust layers 6, 7: 8192 units",
    "conv3_4_5_wide": "Adjust layers 3, 4, 5: 512, 1024, 512 maps",
    "conv3_4_5_wide_fc_8192": "Adjust layers 3, 4, 5 (wide) and 6, 7: 8192 units",
}

#: The paper's Table 2 (ImageNet 2012 validation top-1 / top-5 error, %), quoted from the paper.
PAPER_TABLE2: list[dict] = [
    {"model": "Krizhevsky et al., 1 convnet", "val_top1_error": 40.7, "val_top5_error": 18.2},
    {
        "model": "Krizhevsky et al. replicated, 1 convnet",
        "val_top1_error": 40.5,
        "val_top5_error": 18.1,
    },
    {"model": "1 convnet as in Fig. 3", "val_top1_error": 38.4, "val_top5_error": 16.5},
    {"model": "5 convnets as in Fig. 3", "val_top1_error": 36.7, "val_top5_error": 15.3},
]

#: Record-key prefix of Krizhevsky's layout and of a variant trained on the small training set.
KRIZHEVSKY, SMALL = "krizhevsky", "small_"


def check_variants(variants) -> list[str]:
    """The Table 3 variants to train: ``"all"`` (every one of
    :data:`zfcore.models.TABLE3_VARIANTS`) or a non-empty list of their names, with ``"zf"``."""
    chosen = list(TABLE3_VARIANTS) if variants == "all" else list(variants)
    unknown = [v for v in chosen if v not in TABLE3_VARIANTS]
    if unknown or not chosen:
        raise AblationError(
            f"unknown variant(s) {unknown}: choose from {list(TABLE3_VARIANTS)} or 'all'"
        )
    if "zf" not in chosen:
        raise AblationError(
            "the comparisons are against the Fig. 3 model: variants must include 'zf'"
        )
    return chosen


def _network_key(rec: NetworkRecord) -> str:
    j = rec.job
    if j.group == "krizhevsky":
        return KRIZHEVSKY
    return (SMALL if j.group == "small_train" else "") + j.variant


def _boot(
    claim: str,
    arrays: dict,
    names: Sequence[str],
    stat: Callable,
    n_boot: int,
    seed: int,
    sets: Sequence[str] = ("val",),
) -> Verdict:
    nets = {n: {s: arrays[n][s] for s in sets} for n in names}
    small = names[0].startswith(SMALL)

    def several_seeds(same_set: bool) -> dict:
        return {
            n: {s: a[s] for s in sets}
            for n, a in arrays.items()
            if (n.startswith(SMALL) == small) == same_set
            and set(sets) <= set(a)
            and len(a[sets[0]]) > 1
        }

    # a network trained once borrows the seed spread of the networks on the same training set;
    # while none of them has several seeds, that of the networks on the other set (stated)
    pool, note = several_seeds(True), ""
    if not pool and any(len(nets[n][sets[0]]) == 1 for n in nets) and several_seeds(False):
        pool = several_seeds(False)
        here, there = ("small", "full") if small else ("full", "small")
        note = (
            f"; none on the {here} training set has several seeds yet: those are the {there} "
            f"set's networks, assumed to vary as much"
        )
    v = hierarchical_bootstrap(
        claim, nets, stat, n_boot=n_boot, seed=seed, unit="points", spread_from=pool or nets
    )
    return replace(v, source=v.source + note) if note else v


def _accuracy_gain(better: str, worse: str):
    """Effect in points: ``better``'s val top-1 accuracy minus ``worse``'s."""
    return lambda m: 100 * (m[better]["val"] - m[worse]["val"])


def _gap(m: dict, name: str):
    """Val top-1 error minus eval-mode train top-1 error = train accuracy - val accuracy."""
    return 100 * (m[name]["train"] - m[name]["val"])


def ablation_verdicts(
    records: Mapping[str, Sequence[NetworkRecord]], *, n_boot: int = 2000, seed: int = 0
) -> list[Verdict]:
    """Every comparison of Tables 2-3 the recorded networks allow (``records``: network key ->
    its seeds' records; keys are variants, ``"krizhevsky"`` and ``"small_<variant>"``), each with
    its rule, effects in percentage points, intervals over seeds and images:

    * ``zf_layout_beats_krizhevsky`` (Table 2): Fig. 3's val top-1 accuracy minus Krizhevsky's;
    * ``table3_<variant>``: each Table 3 row against the Fig. 3 model ``"zf"``, read as
      :data:`TABLE3_CLAIMS` says (worse, better, or equivalent within the margin);
    * ``removing_both_costs_most``: removing layers 3, 4, 6, 7 costs more than removing 3-4 or 6-7
      alone (its extra error over the larger of the two single removals);
    * ``fc_size_makes_little_difference``: both resized fully connected models within the margin
      of Fig. 3 (effect = margin minus the larger of the two differences);
    * ``wider_middle_conv_helps``: the wide conv3-5 model's val top-1 accuracy minus Fig. 3's;
    * ``wider_conv_and_fc_overfits`` (and ``..._small_train``): the eval-mode val - train gap of
      the wide conv + 8192-unit model minus Fig. 3's, on the full (small) training set.
    """
    if "zf" not in records:
        raise AblationError(
            f"the comparisons are against the Fig. 3 model: records need 'zf' (got {list(records)})"
        )
    arrays = network_arrays(records)
    kw = dict(n_boot=n_boot, seed=seed)
    out = []
    if KRIZHEVSKY in arrays:
        out.append(
            _boot(
                "zf_layout_beats_krizhevsky",
                arrays,
                ("zf", KRIZHEVSKY),
                _accuracy_gain("zf", KRIZHEVSKY),
                **kw,
            )
        )
    for v, (reading, _) in TABLE3_CLAIMS.items():
        if v not in arrays:
            continue
        if reading == "same":
            diff = _boot(f"table3_{v}", arrays, ("zf", v), _accuracy_gain("zf", v), **kw)
            out.append(equivalence(f"table3_{v}", diff, EQUIVALENCE_MARGIN))
        else:
            better, worse = ("zf", v) if reading == "worse" else (v, "zf")
            out.append(
                _boot(f"table3_{v}", arrays, (better, worse), _accuracy_gain(better, worse), **kw)
            )
    depth = ("no_layers6_7", "no_layers3_4", "no_layers3_4_6_7")
    if set(depth) <= set(arrays):

        def extra_cost(m):  # error(both) - max(error(6-7), error(3-4)) = min(acc) - acc(both)
            return 100 * (
                np.minimum(m["no_layers6_7"]["val"], m["no_layers3_4"]["val"])
                - m["no_layers3_4_6_7"]["val"]
            )

        out.append(_boot("removing_both_costs_most", arrays, depth, extra_cost, **kw))
    fc = ("fc6_7_2048", "fc6_7_8192")
    if set(fc) <= set(arrays):

        def within_margin(m):
            worst = np.maximum(
                abs(m[fc[0]]["val"] - m["zf"]["val"]), abs(m[fc[1]]["val"] - m["zf"]["val"])
            )
            return EQUIVALENCE_MARGIN - 100 * worst

        v = _boot("fc_size_makes_little_difference", arrays, ("zf",) + fc, within_margin, **kw)
        out.append(
            Verdict(
                v.claim,
                v.effect,
                v.low,
                v.high,
                v.verdict,
                f"{v.source}; equivalence margin {EQUIVALENCE_MARGIN:g} points fixed in advance: "
                f"effect = margin - the larger |difference| of the two resized models",
                v.margin,
                v.unit,
            )
        )
    if "conv3_4_5_wide" in arrays:
        out.append(
            _boot(
                "wider_middle_conv_helps",
                arrays,
                ("conv3_4_5_wide", "zf"),
                _accuracy_gain("conv3_4_5_wide", "zf"),
                **kw,
            )
        )
    for prefix, suffix in (("", ""), (SMALL, "_small_train")):
        wide, base = prefix + "conv3_4_5_wide_fc_8192", prefix + "zf"
        if {wide, base} <= set(arrays):
            out.append(
                _boot(
                    f"wider_conv_and_fc_overfits{suffix}",
                    arrays,
                    (wide, base),
                    lambda m, w=wide, b=base: _gap(m, w) - _gap(m, b),
                    sets=("val", "train"),
                    **kw,
                )
            )
    return out


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass
class AblationStudy:
    """Tables 2-3 on the complete schedule: ``records`` maps a network key (a Table 3 variant,
    ``"krizhevsky"``, ``"small_<variant>"``) to its seeds'
    :class:`zfcore.paper.comparisons.NetworkRecord`;
    ``main`` is the profile's main run (the Fig. 3 model, seed 0); ``epochs`` the schedule."""

    epochs: int
    records: dict
    main: object
    small_train_images: int
    #: the whole comparison study in trainings of the main model (:func:`study_cost`)
    study_trainings: float = 0.0

    @property
    def seeds(self) -> int:
        """The fewest seeds any network of Tables 2-3 (a Table 3 variant or Krizhevsky's layout,
        on the full training set) was trained with."""
        return min(len(r) for k, r in self.records.items() if not k.startswith(SMALL))

    @property
    def small_train_seeds(self) -> int:
        """The fewest seeds any network on the small training set was trained with (0 when none
        is recorded): the overfitting check of Table 3, reported apart from Tables 2-3."""
        return min((len(r) for k, r in self.records.items() if k.startswith(SMALL)), default=0)

    def stat(self, key: str, what: str) -> tuple[float, float]:
        """Mean and standard deviation over seeds of one network's ``what`` (a record property)."""
        return _mean_sd([getattr(r, what) for r in self.records[key]])

    def row(self, key: str, label: str) -> dict:
        """One line of Tables 2-3: mean and sd over seeds of the eval-mode and running train
        top-1 error, val top-1 and top-5 error, and the eval-mode gap val - train."""
        out = {"model": label, "seeds": len(self.records[key])}
        for what in (
            "train_top1_error",
            "train_running_top1_error",
            "val_top1_error",
            "val_top5_error",
        ):
            out[what], out[what + "_sd"] = self.stat(key, what)
        gaps = [r.val_top1_error - r.train_top1_error for r in self.records[key]]
        out["val_minus_train_top1"], out["val_minus_train_top1_sd"] = _mean_sd(gaps)
        return out

    def tables(self) -> "tuple[list[dict], list[dict], list[dict]]":
        """Table 2 (Krizhevsky's layout, the Fig. 3 model), Table 3 (one row per variant, named by
        :data:`TABLE3_LABELS`) and the small-training-set rows."""
        table2 = [
            self.row(k, label)
            for k, label in (
                (KRIZHEVSKY, "Krizhevsky et al. layout (11x11/4), 1 convnet"),
                ("zf", "1 convnet as in Fig. 3 (7x7/2)"),
            )
            if k in self.records
        ]
        table3 = [self.row(v, TABLE3_LABELS[v]) for v in TABLE3_VARIANTS if v in self.records]
        small = [
            self.row(SMALL + v, f"{TABLE3_LABELS[v]}, {self.small_train_images} training images")
            for v in TABLE3_VARIANTS
            if SMALL + v in self.records
        ]
        return table2, table3, small

    def budget_text(self) -> str:
        """The schedule, and the Fig. 3 model's error on it (mean over seeds) beside the main
        model's."""
        zf, sd = self.stat("zf", "val_top1_error")
        return (
            f"Every network: {self.epochs} epochs (the main model's complete schedule), "
            f"{self.seeds}+ seeds per network of Tables 2-3"
            + (
                f", {self.small_train_seeds}+ per network on {self.small_train_images} images"
                if self.small_train_seeds
                else ""
            )
            + f". Fig. 3 model: validation top-1 error {zf:.2f} ± {sd:.2f} % "
            f"over seeds; the main model (seed 0) {self.main.final.val_top1_error:.2f} %."
        )

    def numbers(self) -> dict:
        """The numbers notebook 09 records: the schedule, the seeds, every network's errors (mean,
        sd and per seed), the Fig. 3 model's error on this schedule beside the main model's, and
        the cost of each removal, and the whole study's compute (in main-model trainings, and in
        one worker's hours at the Fig. 3 network's measured pace)."""
        out = dict(
            schedule_epochs=self.epochs,
            seeds=self.seeds,
            small_train_seeds=self.small_train_seeds,
            small_train_images=self.small_train_images,
            zf_val_top1_error=self.stat("zf", "val_top1_error")[0],
            main_val_top1_error=self.main.final.val_top1_error,
        )
        for key, recs in self.records.items():
            for what in (
                "val_top1_error",
                "val_top5_error",
                "train_top1_error",
                "train_running_top1_error",
            ):
                out[f"{key}_{what}"], out[f"{key}_{what}_sd"] = self.stat(key, what)
            out[f"{key}_val_top1_error_per_seed"] = [r.val_top1_error for r in recs]
            out[f"{key}_seeds"] = len(recs)
            out[f"{key}_train_minutes"] = statistics.fmean(r.train_seconds for r in recs) / 60
        zf = out["zf_val_top1_error"]
        for k, v in (
            ("layers6_7", "no_layers6_7"),
            ("layers3_4", "no_layers3_4"),
            ("both", "no_layers3_4_6_7"),
        ):
            if v in self.records:
                out[f"cost_removing_{k}"] = out[f"{v}_val_top1_error"] - zf
        if self.study_trainings:
            # one worker's hours at the Fig. 3 network's measured pace; two side by side halve it
            out["study_main_model_trainings"] = self.study_trainings
            out["study_worker_hours"] = self.study_trainings * out["zf_train_minutes"] / 60
        return out

    def verdicts(self) -> list[Verdict]:
        """:func:`ablation_verdicts` of these networks."""
        return ablation_verdicts(self.records)


def ablation_study(
    profile: "str | Profile",
    variants="all",
    *,
    seeds: "int | None" = None,
    train_missing: bool = True,
    workers: int = 1,
) -> AblationStudy:
    """The records of every chosen Table 3 variant (:func:`check_variants`), Krizhevsky's layout
    and the small-training-set networks, each with ``seeds`` seeds (default the profile's
    ``comparison_seeds``) on the complete schedule, trained first where missing
    (:func:`zfcore.paper.comparisons.network_records`)."""
    P = get_profile(profile)
    chosen = check_variants(variants)
    jobs = study_jobs(P, ("table3", "krizhevsky", "small_train"), chosen, seeds)
    recs = network_records(P, jobs, train_missing=train_missing, workers=workers)
    by_network: dict[str, list] = {}
    for j in jobs:
        if j.name in recs and (j.group != "small_train" or j.variant in chosen):
            by_network.setdefault(_network_key(recs[j.name]), []).append(recs[j.name])
    if "zf" not in by_network:
        raise AblationError(
            "no record of the Fig. 3 model: run the study (python -m zfcore.paper.comparisons)"
        )
    small = next((dict(j.overrides)["n_train"] for j in jobs if j.group == "small_train"), 0)
    return AblationStudy(
        comparison_overrides(P)["epochs"], by_network, training_run(P), small, study_cost(P)
    )


def _cell(r: dict, key: str) -> str:
    sd = r.get(key + "_sd")
    return f"{r[key]:.1f}" if not sd else f"{r[key]:.1f}±{sd:.1f}"


def tables_text(rows: Sequence[dict], paper: Sequence[dict] = PAPER_TABLE2) -> str:
    """Tables 2 and 3 as printed text (mean ± sd over seeds), the paper's Table 2 rows last
    (labelled "paper:")."""
    lines = [
        f"{'model':62s} {'seeds':>5s} {'train top-1':>11s} {'(running)':>10s} "
        f"{'val top-1':>10s} {'val top-5':>10s}"
    ]
    for r in rows:
        lines.append(
            f"{r['model']:62s} {r.get('seeds', 1):5d} {_cell(r, 'train_top1_error'):>11s} "
            f"{_cell(r, 'train_running_top1_error'):>10s} {_cell(r, 'val_top1_error'):>10s} "
            f"{_cell(r, 'val_top5_error'):>10s}"
        )
    for r in paper:
        lines.append(
            f"{'paper: ' + r['model']:62s} {'-':>5s} {'-':>11s} {'-':>10s} "
            f"{r['val_top1_error']:10.1f} {r['val_top5_error']:10.1f}"
        )
    return "\n".join(lines)


def verdict_text(verdict: Verdict) -> str:
    """A verdict of :func:`ablation_verdicts` as printed: its rule, the verdict and, for a Table 3
    row, the paper's words."""
    lines = [verdict.rule, "   " + str(verdict)]
    if verdict.claim.startswith("table3_"):
        lines.append("   the paper: " + TABLE3_CLAIMS[verdict.claim[len("table3_") :]][1])
    return "\n".join(lines)


def verdict_counts(verdicts) -> dict[str, int]:
    """How many verdicts came out "held", "did not hold" and "within noise"."""
    return {
        w: sum(v.verdict == w for v in verdicts) for w in ("held", "did not hold", "within noise")
    }


def study_provenance(records: Mapping[str, Sequence[NetworkRecord]]) -> "tuple[dict, dict]":
    """The fingerprints of every recorded network (``{record name: fingerprint}``, for
    :meth:`zfcore.report.Report.uses_models`) and the numbers naming where they were trained:
    ``study_devices`` (each device once) and ``study_commits``."""
    recs = [r for rs in records.values() for r in rs]
    models = {r.job.name: r.provenance.get("model_fingerprint", "unknown") for r in recs}
    return models, {
        "study_devices": sorted({r.provenance.get("device", "unknown") for r in recs}),
        "study_commits": sorted({r.provenance.get("commit", "unknown")[:12] for r in recs}),
    }


#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 09_ablations records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "Table 2: the 7x7/2 model beats Krizhevsky's layout",
        lambda n: (
            f"validation top-1 error {n.f('zf_val_top1_error', '.2f')} ± "
            f"{n.f('zf_val_top1_error_sd', '.2f')} % "
            f"against {n.f('krizhevsky_val_top1_error', '.2f')} ± "
            f"{n.f('krizhevsky_val_top1_error_sd', '.2f')} % "
            f"(mean ± sd over {n.f('zf_seeds', 'd')} and {n.f('krizhevsky_seeds', 'd')} seeds, "
            "the complete "
            f"{n.f('schedule_epochs', 'g')}-epoch schedule; the main model: "
            f"{n.f('main_val_top1_error', '.2f', unit=' %')})"
        ),
    ),
    (
        "Table 3: removing layers 6-7 or 3-4 costs little, both a lot",
        lambda n: (
            NOT_RECORDED
            if n.peek("no_layers6_7_seeds") is None
            else f"validation top-1 error minus the full network's: without layers 6-7 "
            f"{n.f('cost_removing_layers6_7', '+.2f')}, without 3-4 "
            f"{n.f('cost_removing_layers3_4', '+.2f')}, "
            f"without both {n.f('cost_removing_both', '+.2f')} points"
        ),
    ),
    (
        "Table 3: fc size makes little difference; wider middle conv layers help",
        lambda n: (
            NOT_RECORDED
            if n.peek("fc6_7_2048_seeds") is None
            else f"validation top-1 error: Fig. 3 {n.f('zf_val_top1_error', '.2f', unit=' %')}, "
            "fc 2048 "
            f"{n.f('fc6_7_2048_val_top1_error', '.2f', unit=' %')}, fc 8192 "
            f"{n.f('fc6_7_8192_val_top1_error', '.2f', unit=' %')}, wide conv 3-5 "
            f"{n.f('conv3_4_5_wide_val_top1_error', '.2f', unit=' %')}"
        ),
    ),
    (
        "Table 3: widening both the middle conv and the fc layers overfits",
        lambda n: (
            NOT_RECORDED
            if n.peek("conv3_4_5_wide_fc_8192_seeds") is None
            else "validation minus eval-mode training top-1 error: Fig. 3 "
            f"{_gap_text(n, 'zf')}, wide conv + fc 8192 {_gap_text(n, 'conv3_4_5_wide_fc_8192')} "
            f"points on the full training set; on {n.f('small_train_images', ',d')} images "
            f"{_gap_text(n, 'small_zf')} and {_gap_text(n, 'small_conv3_4_5_wide_fc_8192')}"
        ),
    ),
]


def _gap_text(n: Numbers, network: str) -> str:
    """A network's val - train (eval mode) top-1 error in points, from notebook 09's numbers."""
    keys = [f"{network}_val_top1_error", f"{network}_train_top1_error"]
    return n.calc(lambda val, train: val - train, keys, "+.2f")


#: Numbers of notebook 09_ablations in the README's prose (``<!-- value:NAME -->``).
README_VALUES: dict[str, Callable[[Numbers], str]] = {
    "comparison_epochs": lambda n: n.f("schedule_epochs", "g"),
    "comparison_network_minutes": lambda n: n.f("zf_train_minutes", ".0f", unit=" min"),
    "comparison_study_trainings": lambda n: n.f("study_main_model_trainings", ".0f"),
    "comparison_study_worker_hours": lambda n: n.f("study_worker_hours", ".0f", unit=" h"),
}
