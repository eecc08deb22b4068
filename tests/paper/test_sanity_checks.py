"""zfcore.paper.sanity_checks: the reading of cascading randomisation (record keys, table,
survival under each metric, the fc re-initialisation verdicts and their sentences) on a result
made by hand."""

import pytest
import torch

from zfcore.paper.sanity_checks import (
    METRICS,
    checkpoints,
    fc_reinit_checks,
    fc_reinit_sentence,
    randomization_numbers,
    randomization_table,
    survival,
)
from zfcore.sanity import SanityError, SanityResult


def _hand_result():
    """A SanityResult by hand: 3 rules, stages trained/logits/layer6/layer1, 2 images."""
    rules, stages = ["deconvnet", "guided", "gradient"], ["trained", "logits", "layer6", "layer1"]
    sim = torch.tensor(
        [
            [[1, 1], [0.9, 0.7], [0.2, 0.4], [0, 0]],  # deconvnet: changed
            [[1, 1], [1, 1], [0.95, 0.85], [0.9, 0.8]],  # guided: kept
            [[1, 1], [0.5, 0.5], [0.1, 0.3], [0, 0.2]],
        ]
    )  # gradient: changed
    base = torch.tensor([[0.1, 0.3], [0.6, 0.4], [0.0, 0.2]])  # per image, per rule
    rows = {m: base.clone() for m in ("spearman_abs", "spearman", "ssim")}
    mean = base.mean(1)
    return SanityResult(
        stages,
        rules,
        sim,
        sim.clone(),
        sim.clone() * 0 + 0.99,
        mean,
        mean.clone(),
        mean.clone(),
        torch.zeros(3, 4, 1, 2, 2),
        torch.zeros(1, 3, 2, 2),
        torch.tensor([0, 1]),
        rows,
    )


def test_records_and_survival_by_hand():
    res = _hand_result()
    assert checkpoints(res) == ["layer6", "layer1"]
    rec = randomization_numbers(res)
    assert rec["deconvnet_spearman_abs_randomized_to_layer6"] == pytest.approx(0.3)
    assert rec["guided_ssim_randomized_to_layer1"] == pytest.approx(0.99)
    assert rec["gradient_spearman_abs_different_images"] == pytest.approx(0.1)
    assert len(rec) == 3 * (2 * 3 + 2)
    assert len(randomization_table(res).splitlines()) == 4
    s = survival(res, "layer6")
    # midpoints (1 + b) / 2: deconvnet .6, guided .75, gradient .55
    assert s.similarity["guided", "SSIM"] == pytest.approx(0.99)
    assert [s.count(r) for r in res.rules] == [1, 3, 1]  # SSIM is kept for all
    assert s.as_record() == {
        "deconvnet_unchanged_by_fc_randomization_metrics": 1,
        "guided_unchanged_by_fc_randomization_metrics": 3,
        "gradient_unchanged_by_fc_randomization_metrics": 1,
    }
    assert s.adebayo_reproduced() and s.describe("guided") == "unchanged under all three metrics"
    assert s.describe("gradient") == "unchanged under 1 of 3 metrics" and len(METRICS) == 3
    assert "is reproduced here" in s.sentence() and "passes this check" in s.sentence()
    with pytest.raises(SanityError, match="layer5"):
        survival(res, "layer5")


def test_fc_reinit_checks_effects_by_hand():
    numbers, checks = fc_reinit_checks(_hand_result(), "layer6")
    # deconvnet: midpoints .55, .65 against kept .2, .4 -> effect mean(.35, .25)
    assert numbers["deconvnet_spearman_abs_midpoint_to_unrelated"] == pytest.approx(0.6)
    assert [c.claim for c in checks] == [
        "deconvnet_changed_by_fc_reinit",
        "guided_changed_by_fc_reinit",
        "gradient_changed_by_fc_reinit",
        "guided_less_sensitive_than_gradient",
    ]
    assert checks[0].effect == pytest.approx(0.30)
    assert checks[1].effect == pytest.approx((0.8 - 0.95 + 0.7 - 0.85) / 2)
    assert checks[3].effect == pytest.approx((0.95 - 0.1 + 0.85 - 0.3) / 2)
    text = fc_reinit_sentence(checks)
    assert f"{checks[0].verdict} for the deconvnet" in text
    assert text.endswith(f"less sensitive than the gradient' {checks[3].verdict}.")
    assert "was not measured for guided backpropagation" in fc_reinit_sentence(checks[:1])
