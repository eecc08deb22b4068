"""Notebooks never drop the user's photos (05, 07 on tiny), and the imagenet profile runs without
ImageNet: random weights in the ZFNet layout at 224 px, scikit-image's bundled photos as the
user's folder (02, 03, 05, 07, 08, 12, 13), with parameters that keep each run small."""

import json

import numpy as np
import pytest
from PIL import Image

from zfcore.profiles import get_profile
from zfcore.runner import NotebookFailed, list_notebooks, promised_figures, run_notebook

pytestmark = pytest.mark.notebook


def _run(number, profile, **params):
    path = list_notebooks([number])[0]
    try:
        run_notebook(path, profile, params)
    except NotebookFailed as e:
        pytest.fail(str(e), pytrace=False)
    figs = get_profile(profile).figures_dir
    numbers = json.loads((figs / f"{path.stem}.json").read_text())
    missing = [f for f in promised_figures(path) if not (figs / f"{path.stem}_{f}.png").is_file()]
    assert not missing, f"{path.name} did not save {missing}"
    return numbers


@pytest.fixture(scope="module")
def user_photo(tmp_path_factory):
    rng = np.random.default_rng(1)
    p = tmp_path_factory.mktemp("mine") / "holiday.png"
    Image.fromarray(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(p)
    return p


@pytest.mark.parametrize("number", ["05", "07"])
def test_user_photo_is_in_the_figure(number, user_photo):
    numbers = _run(number, "tiny", photos=[str(user_photo)], n_examples=2)
    assert numbers["example_images"][0] == "holiday.png"
    assert numbers["example_user_photos"] == ["holiday.png"]
    assert len(numbers["example_images"]) == 2  # one test image filled the rest


# Rough eye and nose positions in two of scikit-image's photos (pixels of the originals), for
# notebook 08's part occlusion; only that it runs is checked here.
_FACES = {
    "cat.png": {"left_eye": [140, 125], "right_eye": [262, 112], "nose": [205, 185]},
    "astronaut.png": {"left_eye": [203, 118], "right_eye": [248, 112], "nose": [228, 148]},
    # the astronaut mirrored (512 px wide): the eyes swap sides
    "astronaut_mirrored.png": {"left_eye": [263, 112], "right_eye": [308, 118], "nose": [283, 148]},
    "cat_mirrored.png": {"left_eye": [188, 112], "right_eye": [310, 125], "nose": [245, 185]},
}


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    import skimage.data as skd

    d = tmp_path_factory.mktemp("skimage_photos")
    names = {
        "cat": "chelsea",
        "astronaut": "astronaut",
        "coffee": "coffee",
        "rocket": "rocket",
        "camera": "camera",
        "coins": "coins",
        "horse": "horse",
        "moon": "moon",
        "immunohistochemistry": "immunohistochemistry",
        "retina": "retina",
    }
    classes = {
        "cat": "animal",
        "horse": "animal",
        "astronaut": "person",
        "camera": "person",
        "coffee": "object",
        "rocket": "object",
        "coins": "object",
        "moon": "science",
        "immunohistochemistry": "science",
        "retina": "science",
    }
    for name, fn in names.items():
        a = getattr(skd, fn)()
        a = (a * 255).astype(np.uint8) if a.dtype == bool else a
        (d / classes[name]).mkdir(exist_ok=True)  # labelled by subfolder, as ImageFolder
        Image.fromarray(a).save(d / classes[name] / f"{name}.png")
    (d.parent / "faces.json").write_text(json.dumps(_FACES))
    faces = d.parent / "faces"
    faces.mkdir(exist_ok=True)
    for n, c in (("cat.png", "animal"), ("astronaut.png", "person")):
        (faces / n).write_bytes((d / c / n).read_bytes())
    for n, c in (
        ("astronaut", "person"),
        ("cat", "animal"),
    ):  # mirrored: the positive control needs 4 faces
        Image.open(d / c / f"{n}.png").transpose(Image.FLIP_LEFT_RIGHT).save(
            faces / f"{n}_mirrored.png"
        )
    return d


CASES = {
    "02": {},
    "03": {"photo_folder": "{folder}", "maps_per_layer": 2, "measure_maps": 2},
    "05": {"n_examples": 2},
    "07": {"n_examples": 1, "window": 56, "stride": 28},
    "08": {"dog_photos": "{faces}", "dog_keypoints": "{keypoints}", "n_images": 2, "seeds": 2},
    "12": {"photo_folder": "{folder}", "focus_images": 1, "tour_steps": 2},
    "13": {"n_images": 2},
}


@pytest.mark.parametrize("number", list(CASES))
def test_imagenet_profile_runs_without_imagenet(number, photo_folder, monkeypatch):
    monkeypatch.setenv("ZFCORE_WEIGHTS", "random")  # nothing downloaded
    where = {
        "folder": str(photo_folder),
        "faces": str(photo_folder.parent / "faces"),
        "keypoints": str(photo_folder.parent / "faces.json"),
    }
    params = {k: v.format(**where) if isinstance(v, str) else v for k, v in CASES[number].items()}
    numbers = _run(number, "imagenet", **params)
    if "model" in numbers:
        assert "random" in numbers["model"]
