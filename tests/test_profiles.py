"""Profiles: one configuration object per profile, errors that name the fix."""

import pytest

from zfcore.profiles import PROFILES, ProfileError, get_profile
from zfcore.report import Report


def test_all_profiles_exist_and_build_models():
    from zfcore.models import zfnet

    assert set(PROFILES) == {"tiny", "mini", "imagenette", "imagenet"}
    for name in ("tiny", "mini"):
        p = get_profile(name)
        assert p.name == name and p.figures_dir.name == name
        zfnet(**p.model_kwargs())


def test_paper_recipe_on_imagenet_profile():
    p = get_profile("imagenet")
    assert (p.optimizer, p.lr, p.momentum, p.init, p.clip_rms, p.batch_size, p.epochs) == (
        "sgd",
        1e-2,
        0.9,
        "paper",
        0.1,
        128,
        70,
    )
    assert p.checkpoint_epochs == (1, 2, 5, 10, 20, 30, 40, 64)
    assert p.image_size == 224 and p.width == 1.0


def test_default_profile_is_mini():
    assert get_profile().name == "mini"


def test_unknown_profile_names_choices():
    with pytest.raises(
        ProfileError, match="unknown profile 'huge'.*tiny, mini, imagenette, imagenet"
    ):
        get_profile("huge")


def test_overrides_and_unknown_field():
    assert get_profile("tiny", epochs=1).epochs == 1
    with pytest.raises(ProfileError, match="unknown profile field"):
        get_profile("tiny", epoch=1)


def test_identity_excludes_paths():
    a = get_profile("tiny").identity()
    b = get_profile("tiny", cache_dir="/elsewhere").identity()
    assert a == b and "cache_dir" not in a


def test_report_writes_figures_and_numbers(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import json

    import matplotlib.pyplot as plt
    import numpy as np

    rep = Report("99_demo", get_profile("tiny", figures_root=tmp_path))
    fig = plt.figure()
    rep.savefig(fig, "panel")
    plt.close(fig)
    rep.record(hit_rate=np.float32(0.5), count=np.int64(3), nan=float("nan"))
    rep.table([{"layer": 1, "acc": 0.25}], "table")
    data = json.loads(rep.save().read_text())
    assert data["hit_rate"] == 0.5 and data["count"] == 3 and data["nan"] is None
    assert data["figures"] == ["99_demo_panel.png"]
    assert (tmp_path / "tiny" / "99_demo_panel.png").is_file()
    assert (tmp_path / "tiny" / "99_demo_table.csv").read_text().startswith("layer,acc")


def test_a_shorter_run_caps_the_comparison_schedule():
    from zfcore.train import comparison_overrides

    p = get_profile("mini", epochs=1)  # mini's comparison schedule is 4 epochs
    assert comparison_overrides(p) == {"epochs": 1}
    with pytest.raises(ProfileError, match="comparison_epochs"):
        get_profile("mini", comparison_epochs=0)
