"""Fig. 1's measurements (notebook 02): shared switches by hand, the walk's record against the
committed figure JSON's keys and against independent computations, the sentences."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zfcore import models
from zfcore.boxes import energy_in_boxes
from zfcore.deconv import RULES, deconv_steps, layer_activations, project, requests
from zfcore.paper.fig1_deconvnet import (
    fig1_walk,
    rule_cosines,
    rule_projections,
    rules_text,
    shared_switch_share,
)
from zfcore.receptive import receptive_field

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return models.zfnet(width=0.125, image_size=64, fc_units=64, num_classes=10).eval()


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))


def test_shared_switch_share_by_hand():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 10.0
    _, sw = F.max_pool2d(x + torch.arange(25.0).view(1, 1, 5, 5) * 1e-3, 3, 2, return_indices=True)
    assert shared_switch_share(sw[0]) == 1.0  # all four windows pick the centre
    _, sw = F.max_pool2d(torch.arange(25.0).view(1, 1, 5, 5), 3, 2, return_indices=True)
    assert shared_switch_share(sw) == 0.0  # distinct corners
    # 1-D: [1, 2, 9, 0, 3, 0, 0] pooled 3/2 -> windows pick 2, 2, 4: two of three share
    row = torch.tensor([1.0, 2.0, 9.0, 0.0, 3.0, 0.0, 0.0]).view(1, 1, 1, 7)
    _, sw = F.max_pool2d(row, (1, 3), (1, 2), return_indices=True)
    assert sw.flatten().tolist() == [2, 2, 4]
    assert shared_switch_share(sw) == pytest.approx(2 / 3)


def test_walk_numbers_have_the_committed_keys():
    """The walk's record and the rules' cosines are exactly notebook 02's JSON keys (besides what
    Report adds: profile, figures, provenance)."""
    committed = json.loads((ROOT / "figures" / "mini" / "02_deconvnet.json").read_text())
    recorded = set(committed) - {"profile", "figures", "provenance"}
    torch.manual_seed(0)
    model = models.zfnet(width=0.125, image_size=64, fc_units=64, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    walk = fig1_walk(model, x, "layer5")
    keys = set(walk.numbers()) | set(rule_cosines(rule_projections(model, x, "layer5", 0, 0, 0)))
    assert keys == recorded


def test_walk_against_independent_computations(model, image):
    walk = fig1_walk(model, image, "layer3")
    a = layer_activations(model, image, ["layer3"])["layer3"][0]
    # the strongest activation, first in raster order
    c, y, xx = (a == a.max()).nonzero()[0].tolist()
    assert (walk.channel, walk.y, walk.x) == (c, y, xx) and walk.value == float(a.max())
    rf = receptive_field(model, "layer3")
    assert walk.field == rf and walk.box == rf.box(y, xx, 64)
    # the walk is deconv_steps', its end the projection
    p = project(model, image, "layer3", requests(0, c, y, xx)).pixels[0]
    assert torch.equal(walk.pixels, p)
    boxes = torch.tensor([walk.box], dtype=torch.float32)
    assert walk.energy_inside_field == pytest.approx(float(energy_in_boxes(p[None], boxes)[0]))
    assert walk.energy_inside_field == pytest.approx(1.0)  # nothing lights up outside the field
    over = deconv_steps(model, image, "layer3", c, y, xx, unpool_mode="overwrite")[-1].signal
    assert walk.max_unpool2d_change == pytest.approx(float((over - p).norm() / p.norm()))
    pools = [s for s in walk.steps if s.op == "unpool"]
    assert (
        list(walk.switch_shares)
        == [s.module for s in pools]
        == ["features.pool2", "features.pool1"]
    )
    for s in pools:
        assert walk.switch_shares[s.module] == shared_switch_share(s.switches)
    n = walk.numbers()
    assert n["shared_switch_share_pool1"] == walk.switch_shares["features.pool1"]
    assert n["feature_map"] == c and n["activation_y"] == y and n["activation_x"] == xx
    assert n["receptive_field_size"] == rf.size and n["receptive_field_stride"] == rf.stride
    # an activation given by hand is walked as given
    other = fig1_walk(model, image, "layer3", 1, 0, 0, rule="guided")
    assert (other.channel, other.y, other.x, other.rule) == (1, 0, 0, "guided")
    assert other.value == float(a[1, 0, 0])


def test_overwriting_shared_switches_changes_the_projection(model, image):
    walk = fig1_walk(model, image, "layer2")
    assert walk.switch_shares["features.pool1"] > 0  # overlapping 3x3/2 pools share switches
    assert walk.max_unpool2d_change > 0
    first = fig1_walk(model, image, "layer1")  # no pool below layer 1
    assert first.switch_shares == {} and first.max_unpool2d_change == 0.0


def test_rule_cosines(model, image):
    proj = rule_projections(model, image, "layer3", 2, 1, 1)
    assert list(proj) == list(RULES)
    for r in RULES:
        want = project(model, image, "layer3", requests(0, 2, 1, 1), rule=r).pixels[0]
        assert torch.equal(proj[r], want)
    cos = rule_cosines(
        {
            "deconvnet": proj["deconvnet"],
            "guided": proj["deconvnet"],
            "gradient": -proj["deconvnet"],
        }
    )
    assert cos == pytest.approx({"cosine_deconvnet_guided": 1.0, "cosine_deconvnet_gradient": -1.0})
    assert rules_text(cos) == (
        "cosine similarity of the deconvnet's projection to guided backpropagation's 1.00, "
        "to the gradient's -1.00"
    )


def test_sentences(model, image):
    walk = fig1_walk(model, image, "layer2")
    assert walk.activation_text("val image 0").startswith(
        f"val image 0; strongest layer2 activation: map {walk.channel} at ({walk.y}, {walk.x}), "
    )
    text = walk.text()
    assert f"receptive field of layer2: {walk.field.size} px" in text
    assert "features.pool1: " in text and "max_unpool2d instead of adding" in text
    claim = walk.claim_text()
    assert claim.startswith("Section 2.1 held here: the projection of layer2 map")
    assert "overlapping pooling shared up to" in claim
    assert "no switches were shared" in fig1_walk(model, image, "layer1").claim_text()
