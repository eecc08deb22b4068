"""zfcore.explain: Figs. 1, 5 and 7 for your own photos, checked against direct computations."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from zfcore import zoo
from zfcore.data import load_image
from zfcore.models import forward_layers, model_fingerprint


@pytest.mark.slow
def test_explain_photo_numbers_match_direct_computation(photo, tmp_path):
    from zfcore.data import get_dataset  # noqa: F401  (tiny's classes for the titles)
    from zfcore.explain import explain_photo

    m = zoo.model_for_profile("tiny", weights="random")
    from zfcore.models import he_init_

    he_init_(m, seed=1)
    m.train()  # the caller's mode comes back unchanged
    n = explain_photo(photo, m, out=tmp_path, profile="tiny", window=16, stride=8, progress=False)
    assert m.training
    m.eval()
    folder = tmp_path / "my photo"
    for f in ("projection.png", "occlusion.png", "invariance.png", "numbers.json"):
        assert (folder / f).is_file(), f
    saved = json.loads((folder / "numbers.json").read_text())
    assert saved["photo_name"] == "my photo.png"
    prov = saved["provenance"]  # the same provenance as every notebook's JSON
    assert prov["profile"] == "tiny" and prov["models"] == {m.zoo_name: model_fingerprint(m)}
    assert prov["commit"] and prov["wall_time_s"] == pytest.approx(saved["seconds"], abs=1e-3)
    x = load_image(photo, "tiny")[None]
    with torch.no_grad():
        p = torch.softmax(m(x), 1)[0]
        a = forward_layers(m, x, ["layer5"])["layer5"][0]
    assert n["predicted_index"] == int(p.argmax())
    assert n["occlusion"]["p_target_unoccluded"] == pytest.approx(float(p.max()), rel=1e-4)
    u = n["strongest_unit"]
    assert u["activation"] == pytest.approx(float(a.max()), rel=1e-5)
    assert float(a[u["map"], u["y"], u["x"]]) == pytest.approx(float(a.max()), rel=1e-6)
    # translating by 0 px is the photo itself: distance 0, p(predicted) as unoccluded
    inv = n["invariance"]["translate_y"]
    i0 = inv["amounts"].index(0.0)
    assert inv["distance_layer1"][i0] == pytest.approx(0.0, abs=1e-4)
    assert inv["p_predicted"][i0] == pytest.approx(float(p.max()), rel=1e-4)


@pytest.mark.slow
def test_explain_photo_fast_occlusion(photo, tmp_path, monkeypatch):
    from zfcore.explain import explain_photo
    from zfcore.models import he_init_

    monkeypatch.setattr("zfcore.occlusion.low_precision_is_fast", lambda device: True)
    m = he_init_(zoo.model_for_profile("tiny", weights="random"), seed=1)
    kw = dict(out=tmp_path, profile="tiny", window=16, stride=8, progress=False)
    exact = explain_photo(photo, m, **kw)["occlusion"]
    fast = explain_photo(photo, m, occlusion="fast", **kw)["occlusion"]
    assert (exact["mode"], exact["precision"], exact["exact"]) == ("exact", "fp32", True)
    assert (fast["mode"], fast["precision"], fast["exact"]) == ("fast", "bf16", False)
    assert 0 <= fast["rechecked_in_float32"] <= 1 and exact["rechecked_in_float32"] is None
    assert fast["p_target_min"] == pytest.approx(exact["p_target_min"], abs=0.01)


@pytest.mark.slow
def test_explain_cli_errors(tmp_path, capsys):
    from zfcore.explain import main

    assert (
        main(
            [
                str(tmp_path / "missing.jpg"),
                "--model",
                "zfnet",
                "--weights",
                "random",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "no such photo" in capsys.readouterr().err
    bad = tmp_path / "not_an_image.jpg"
    bad.write_text("hello")
    assert main([str(bad), "--weights", "random", "--out", str(tmp_path)]) == 2
    assert "not_an_image.jpg" in capsys.readouterr().err
    assert main([str(bad), "--model", "lenet", "--out", str(tmp_path)]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_explain_folder_top9_matches_a_direct_search(tmp_path):
    from zfcore.explain import explain_folder
    from zfcore.models import he_init_

    rng = np.random.default_rng(3)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(11):
        Image.fromarray(rng.integers(0, 256, (70, 70, 3), dtype=np.uint8)).save(
            folder / f"p{i:02d}.png"
        )
    (folder / "readme.txt").write_text("skip me")
    m = he_init_(zoo.model_for_profile("tiny", weights="random"), seed=2)
    n = explain_folder(folder, m, out=tmp_path / "out", profile="tiny", maps=2, progress=False)
    assert (tmp_path / "out" / "folder_top9.png").is_file() and n["photos"] == 11
    saved = json.loads((tmp_path / "out" / "folder_top9.json").read_text())
    assert saved["provenance"]["models"] == {m.zoo_name: model_fingerprint(m)}
    assert any("readme.txt" in s for s in n["skipped"])
    x = torch.stack([load_image(folder / f"p{i:02d}.png", "tiny") for i in range(11)])
    with torch.no_grad():
        a = forward_layers(m, x, ["layer5"])["layer5"]  # (11, maps, h, w)
    best = a.flatten(2).amax(2)  # each photo's peak per map
    for rec in n["maps"]:
        c = rec["map"]
        want = torch.sort(best[:, c], descending=True).values[:9]
        assert rec["activations"] == pytest.approx(want.tolist(), rel=1e-4)
        order = [f"p{int(i):02d}.png" for i in torch.argsort(best[:, c], descending=True)[:9]]
        assert rec["photos"] == order
