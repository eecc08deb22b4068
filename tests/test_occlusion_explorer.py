"""The explorer's occlusion panel: the fast (approximate) map first, the exact one on request or
once the controls are left alone, and the panel says which it shows."""

import time

import pytest
import torch

from zfcore.models import he_init_, zfnet
from zfcore.occlusion import occlude
from zfcore.profiles import get_profile
from zfcore.widgets import Explorer, ExplorerSession


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    return get_profile("tiny", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def model(profile):
    torch.manual_seed(0)
    return he_init_(zfnet(**profile.model_kwargs())).eval()


@pytest.fixture
def session(model, profile, monkeypatch):
    # the fast preset runs in bfloat16 where that is native (it is on the machines CI uses)
    monkeypatch.setattr("zfcore.occlusion.low_precision_is_fast", lambda device: True)
    s = ExplorerSession(model, profile, page_size=16, cols=8, cell=12, panel=64)
    s.select_dataset_image(3)
    s.select_layer("layer5")
    s.select_unit(1)
    s.select_occlusion_size(16)
    return s


def test_session_shows_fast_then_exact(session, model):
    assert session.occlusion_mode() == "fast"
    panel, caption = session.occlusion_panel()
    assert caption.startswith("approximate (each layer's change in bf16, ")
    assert "rechecked in float32; exact follows" in caption
    fast = session.occlusion(mode="fast")
    want = occlude(
        model,
        session.model_input(),
        session.image()[1],
        window=16,
        stride=session.occlusion_stride(16),
        layer="layer5",
        feature=1,
        mode="fast",
    )
    assert torch.equal(fast.prob_target, want.prob_target) and not fast.exact
    exact = session.refine_occlusion()
    assert exact.exact and session.occlusion_mode() == "exact"
    _, caption = session.occlusion_panel()
    assert caption.startswith("exact") and "layer5 map 1 activity" in caption
    session.select_unit(2)  # a new view starts fast again
    assert session.occlusion_mode() == "fast"


def test_fast_that_came_out_exact_is_the_exact_map(session, monkeypatch):
    monkeypatch.setattr("zfcore.occlusion.low_precision_is_fast", lambda device: False)
    assert session.occlusion_mode() == "fast"
    _, caption = session.occlusion_panel()
    assert caption.startswith("exact") and session.occlusion_mode() == "exact"
    assert session.refine_occlusion() is session.occlusion(mode="fast")


def test_button_refines_on_request(session):
    app = Explorer(session, profiles=("tiny",), refine_delay=None)
    app.occ_btn.click()
    assert "approximate" in app.captions["occlusion"].value
    assert app.occ_btn.description == "exact occlusion map"
    app.occ_btn.click()  # on request
    assert "exact. left" in app.captions["occlusion"].value
    assert app.occ_btn.description == "occlusion map"


def test_refines_when_the_controls_rest(session):
    app = Explorer(session, profiles=("tiny",), refine_delay=0.05)
    app.occ_btn.click()
    deadline = time.monotonic() + 120
    while "approximate" in app.captions["occlusion"].value and time.monotonic() < deadline:
        time.sleep(0.05)
    with app._lock:
        assert "exact. left" in app.captions["occlusion"].value
        assert "exact occlusion map" in [k for k, _ in app.timings.records]
