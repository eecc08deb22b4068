"""The deconvnet, sanity-checked (notebook 13): cascading randomisation read as Adebayo et al. do.

Zeiler & Fergus's premise (section 2.1) is that a projection shows what the network *learned*.
Adebayo et al., "Sanity checks for saliency maps" (NeurIPS 2018), test such premises by
re-initialising the layers from the top down and asking whether the pictures change; they found
guided backpropagation nearly invariant and the plain gradient sensitive. The engine
(:func:`zfcore.sanity.cascading_randomization`) measures the similarity of the projections to the
trained ones at each stage; this module reads the result:

* :func:`checkpoints`, :func:`randomization_numbers`, :func:`randomization_table`: the mean
  similarities at the stages notebook 13 reports, as record keys and as text;
* :func:`survival` (:class:`Survival`): which rules' projections "survive" re-initialising the
  fully connected layers under each metric of :data:`METRICS`, and Adebayo et al.'s finding;
* :func:`fc_reinit_checks`: the same question as verdicts (paired bootstraps over images), and
  :func:`fc_reinit_sentence` in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..sanity import SanityError, SanityResult
from . import verdicts
from .headline import Numbers

__all__ = [
    "METRICS",
    "checkpoints",
    "randomization_numbers",
    "randomization_table",
    "Survival",
    "survival",
    "fc_reinit_checks",
    "fc_reinit_sentence",
]

#: The similarity metrics of :func:`survival`: name -> (SanityResult field, its baseline field).
METRICS = {
    "rank correlation |maps|": ("spearman_abs", "baseline_spearman_abs"),
    "rank correlation signed": ("spearman", "baseline_spearman"),
    "SSIM": ("ssim", "baseline_ssim"),
}


def checkpoints(result: SanityResult) -> list:
    """The stages reported in numbers: after the fully connected layers (``layer6``), after
    layer 5 too, after every layer (those the model has)."""
    return [s for s in ("layer6", "layer5", "layer1") if s in result.stages]


def randomization_numbers(result: SanityResult) -> dict:
    """Notebook 13's flat JSON keys: per rule, the mean similarity at each of
    :func:`checkpoints` (Spearman of |maps|, signed, SSIM) and the different-images level."""
    out = {}
    for r, rule in enumerate(result.rules):
        for s in checkpoints(result):
            i = result.stages.index(s)
            out.update(
                {
                    f"{rule}_spearman_abs_randomized_to_{s}": float(
                        result.spearman_abs[r, i].mean()
                    ),
                    f"{rule}_spearman_randomized_to_{s}": float(result.spearman[r, i].mean()),
                    f"{rule}_ssim_randomized_to_{s}": float(result.ssim[r, i].mean()),
                }
            )
        out.update(
            {
                f"{rule}_spearman_abs_different_images": float(result.baseline_spearman_abs[r]),
                f"{rule}_ssim_different_images": float(result.baseline_ssim[r]),
            }
        )
    return out


def randomization_table(result: SanityResult) -> str:
    """Mean Spearman correlation of |maps| at :func:`checkpoints` and the unrelated level, per
    rule, as text."""
    cps = checkpoints(result)
    lines = [
        f"{'rule':10s} "
        + " ".join(f"{'to ' + s:>10s}" for s in cps)
        + f" {'unrelated':>10s}   (Spearman |maps|)"
    ]
    for r, rule in enumerate(result.rules):
        row = [float(result.spearman_abs[r, result.stages.index(s)].mean()) for s in cps]
        lines.append(
            f"{rule:10s} "
            + " ".join(f"{v:10.3f}" for v in row)
            + f" {float(result.baseline_spearman_abs[r]):10.3f}"
        )
    return "\n".join(lines)


@dataclass
class Survival:
    """Which rules' projections "survive" re-initialising the layers down to ``stage`` under each
    metric of :data:`METRICS` (:func:`survival`): ``similarity`` and ``baseline`` (the
    different-images level) per ``(rule, metric)``, and ``survives`` (similarity above the
    midpoint between that level and 1)."""

    stage: str
    rules: list
    similarity: dict
    baseline: dict
    survives: dict

    def count(self, rule: str) -> int:
        """Under how many metrics ``rule`` survives."""
        return sum(self.survives[rule, m] for m in METRICS)

    def as_record(self) -> dict:
        """Notebook 13's keys: per rule, the number of metrics it survives."""
        return {
            f"{rule}_unchanged_by_fc_randomization_metrics": self.count(rule) for rule in self.rules
        }

    def table(self) -> str:
        """Similarity, different-images level and survival per rule and metric, as text."""
        lines = [
            f"{'rule':10s} "
            + " ".join(f"{m:>24s}" for m in METRICS)
            + "   (after re-initialising the fc layers; in brackets: different images)"
        ]
        for rule in self.rules:
            cells = [
                f"{self.similarity[rule, m]:6.2f} ({self.baseline[rule, m]:5.2f}) "
                f"{'same' if self.survives[rule, m] else 'changed':>7s}"
                for m in METRICS
            ]
            lines.append(f"{rule:10s} " + " ".join(f"{c:>24s}" for c in cells))
        return "\n".join(lines)

    def describe(self, rule: str) -> str:
        """``rule``'s survival in words."""
        word = {3: "unchanged under all three metrics", 0: "changed under all three metrics"}
        return word.get(self.count(rule), f"unchanged under {self.count(rule)} of 3 metrics")

    def adebayo_reproduced(self) -> bool:
        """Adebayo et al.'s finding: guided backpropagation survives every metric, the gradient
        not."""
        return self.count("guided") == 3 and self.count("gradient") < 3

    def sentence(self) -> str:
        """The survival of the three rules and Adebayo et al.'s finding, in words."""
        finding = (
            "Adebayo et al.'s finding (guided backpropagation insensitive to the learned top "
            "layers, the gradient not) is "
            + ("" if self.adebayo_reproduced() else "NOT ")
            + "reproduced here"
        )
        deconv = (
            "; the deconvnet, unlike guided backpropagation, passes this check: its projection "
            "of a logit depends on the learned top layers."
            if self.count("deconvnet") < self.count("guided")
            else "; the deconvnet fails this check like guided backpropagation."
        )
        return (
            f"After the fully connected layers are re-initialised, guided backpropagation is "
            f"{self.describe('guided')}, the gradient {self.describe('gradient')} and the "
            f"deconvnet {self.describe('deconvnet')}. " + finding + deconv
        )


def survival(result: SanityResult, stage: str = "layer6") -> Survival:
    """Adebayo et al.'s reading of cascading randomisation: after re-initialising the layers from
    the top down to ``stage`` (default: the fully connected ones, logits, 7, 6), a rule's
    projections "survive" under a metric when their mean similarity to the trained ones stays
    above the midpoint between the different-images level and 1."""
    if stage not in result.stages:
        raise SanityError(
            f"stage {stage!r} is not in the result: choose one of {', '.join(result.stages[1:])}"
        )
    s = result.stages.index(stage)
    sim, base, surv = {}, {}, {}
    for r, rule in enumerate(result.rules):
        for name, (key, base_key) in METRICS.items():
            sim[rule, name] = float(getattr(result, key)[r, s].mean())
            base[rule, name] = float(getattr(result, base_key)[r])
            surv[rule, name] = sim[rule, name] > (1 + base[rule, name]) / 2
    return Survival(stage, list(result.rules), sim, base, surv)


def fc_reinit_checks(result: SanityResult, stage: str = "layer6") -> tuple[dict, list]:
    """The verdicts of the sanity check (:mod:`zfcore.paper.verdicts`, paired bootstraps over
    images): per rule, "the projection changed more than halfway to an unrelated one" after
    re-initialising the layers down to ``stage``
    (:meth:`zfcore.sanity.SanityResult.change_toward_unrelated`; the premise of section 2.1 that
    a projection shows what was learned), and, with both rules, Adebayo et al.'s "guided
    backpropagation is less sensitive than the gradient". Returns the per-rule mean midpoints
    (flat JSON keys) and the verdicts."""
    numbers, checks = {}, []
    for rule in result.rules:
        midpoint, kept = result.change_toward_unrelated(rule, stage)
        numbers[f"{rule}_spearman_abs_midpoint_to_unrelated"] = float(midpoint.mean())
        checks.append(verdicts.paired_bootstrap(f"{rule}_changed_by_fc_reinit", midpoint, kept))
    if {"guided", "gradient"} <= set(result.rules):
        kept = {
            rule: result.change_toward_unrelated(rule, stage)[1] for rule in ("guided", "gradient")
        }
        checks.append(
            verdicts.paired_bootstrap(
                "guided_less_sensitive_than_gradient", kept["guided"], kept["gradient"]
            )
        )
    return numbers, checks


def fc_reinit_sentence(checks: list) -> str:
    """The verdicts of :func:`fc_reinit_checks` in words (a claim not measured says so)."""
    word = {c.claim: c.verdict for c in checks}

    def said(claim: str) -> str:
        return word.get(claim, "was not measured")

    return (
        f"After re-initialising the fully connected layers, 'the projection changed more than "
        f"halfway to an unrelated one' {said('deconvnet_changed_by_fc_reinit')} for the "
        f"deconvnet, {said('guided_changed_by_fc_reinit')} for guided backpropagation and "
        f"{said('gradient_changed_by_fc_reinit')} for the gradient; Adebayo et al.'s 'guided "
        f"backpropagation is less sensitive than the gradient' "
        f"{said('guided_less_sensitive_than_gradient')}."
    )


#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 13_sanity_checks records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "Adebayo et al. (2018): the deconvnet under model randomisation",
        lambda n: (
            "rank correlation with the trained model's map after re-initialising the layers down "
            "to "
            f"layer 6: guided backprop {n.f('guided_spearman_abs_randomized_to_layer6')}, gradient "
            f"{n.f('gradient_spearman_abs_randomized_to_layer6')}, deconvnet "
            f"{n.f('deconvnet_spearman_abs_randomized_to_layer6')} (different images: "
            f"{n.f('deconvnet_spearman_abs_different_images')})"
        ),
    ),
]
