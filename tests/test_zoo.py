"""zfcore.zoo (one function picks the network) and the notebooks' images (photos_first: the
user's photos are never dropped), checked against direct computations."""

import pytest
import torch

from zfcore import zoo
from zfcore.data import load_image
from zfcore.data.images import SAMPLE_PHOTOS, ImageLoadError, PhotoFolder, photos_first
from zfcore.models import ZFNet, forward_layers, layer_names
from zfcore.paper import notebook


def test_photos_first_keeps_every_user_photo_then_fills_with_samples(photo):
    b = photos_first([photo], "tiny", 3)
    assert b.names == ["my photo.png"] + list(SAMPLE_PHOTOS)[:2]
    assert torch.equal(b.images[0], load_image(photo, "tiny"))
    assert b.original_sizes[0] == (120, 90)
    many = photos_first([photo] * 4, "tiny", 2)  # more photos than places: all kept
    assert many.names == ["my photo.png"] * 4
    with pytest.raises(ImageLoadError, match="nope.png"):
        photos_first([photo.parent / "nope.png"], "tiny", 2)


@pytest.mark.slow
def test_get_model_names_and_random_weights_download_nothing():
    m = zoo.get_model("zfnet", weights="random")
    assert isinstance(m, ZFNet) and not m.training and m.input_size == 224
    assert m.classifier.fc8.out_features == 1000 and "random" in m.zoo_name
    r = zoo.get_model("resnet18", weights="random")
    assert set(layer_names(r)) == {"layer1", "layer2", "layer3", "layer4", "layer5", "logits"}
    out = forward_layers(r, torch.zeros(1, 3, 224, 224), ["layer5"])["layer5"]
    assert out.shape == (1, 512, 7, 7) and (out >= 0).all()  # the last stage, rectified
    with pytest.raises(zoo.ZooError, match="unknown model"):
        zoo.get_model("lenet")
    with pytest.raises(zoo.ZooError, match="weights must be"):
        zoo.get_model("alexnet", weights="pretrained")


def test_model_file_round_trip_and_pickles_refused(tmp_path):
    tiny = zoo.model_for_profile("tiny", weights="random")
    torch.save(tiny.state_dict(), tmp_path / "tiny.pt")
    back = zoo.get_model(tmp_path / "tiny.pt")
    assert back.config.image_size == 64 and back.config.num_classes == 10
    for k, v in tiny.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    torch.save({"model": tiny.state_dict(), "epoch": 3}, tmp_path / "resume.pt")  # a checkpoint
    assert torch.equal(
        zoo.get_model(tmp_path / "resume.pt").features.conv1.weight, tiny.features.conv1.weight
    )
    torch.save(tiny, tmp_path / "whole.pt")  # a pickled module: never unpickled
    with pytest.raises(zoo.ZooError, match="refused"):
        zoo.get_model(tmp_path / "whole.pt")
    with pytest.raises(zoo.ZooError, match="no such model file"):
        zoo.get_model(tmp_path / "missing.pt")


@pytest.mark.slow
def test_model_for_profile_weights(monkeypatch):
    a = zoo.model_for_profile("tiny", weights="random")
    from zfcore.train import build_model, make_spec

    b = build_model(make_spec("tiny"))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    monkeypatch.setenv("ZFCORE_WEIGHTS", "random")
    m = zoo.model_for_profile("imagenet")
    assert isinstance(m, ZFNet) and "random" in m.zoo_name
    with pytest.raises(zoo.ZooError, match="arch"):
        zoo.model_for_profile("tiny", arch="vgg16")
    monkeypatch.setenv("ZFCORE_WEIGHTS", "bogus")
    with pytest.raises(zoo.ZooError, match="ZFCORE_WEIGHTS"):
        zoo.model_for_profile("tiny")


def test_check_parameters_names_every_bad_one(tmp_path):
    notebook.check_parameters(
        n=(3, notebook.Int(1, 8)),
        w=(None, notebook.Int(2, none_ok=True)),
        r=("guided", notebook.Choice(("deconvnet", "guided"))),
        photos=([], notebook.Paths()),
        s=(0.3, notebook.Number(0, 1, lo_open=True)),
        f=(None, notebook.Folder()),
    )
    with pytest.raises(ValueError) as e:
        notebook.check_parameters(
            n=(9, notebook.Int(1, 8)),
            r=("x", notebook.Choice(("a",))),
            photos=([str(tmp_path / "no.jpg")], notebook.Paths()),
            s=(0, notebook.Number(0, 1, lo_open=True)),
            b=(True, notebook.Int(0)),
        )
    msg = str(e.value)
    for part in (
        "n must be an int from 1 to 8, not 9",
        "r must be one of 'a'",
        "no.jpg",
        "s must be a number in (0, 1]",
        "b must be an int >= 0, not True",
    ):
        assert part in msg, msg
    assert notebook.per_profile(None, "tiny", 500, tiny=24) == 24
    assert notebook.per_profile(None, "mini", 500, tiny=24) == 500
    assert notebook.per_profile(7, "tiny", 500, tiny=24) == 7


def test_examples_put_user_photos_first(photo):
    m = zoo.model_for_profile("tiny", weights="random")
    ex = notebook.examples_for_profile(m, "tiny", 3, [photo], split="test", choose="correct")
    assert ex.names[0] == "my photo.png" and ex.user == ["my photo.png"] and len(ex) == 3
    assert ex.boxes[0] is None and ex.boxes[1] is not None  # no box for a photo
    with torch.no_grad():
        assert ex.targets[0] == int(m(ex.x[:1]).argmax())  # its own prediction
    ex5 = notebook.examples_for_profile(m, "tiny", 2, [photo], choose="room", photo_boxes="centre")
    assert ex5.boxes.shape == (2, 4) and ex5.boxes[0].tolist() == [16, 16, 48, 48]


def test_photo_folder_labels_by_subfolder(tmp_path, photo):
    for rel in ("dogs/a.png", "cats/b.png", "loose.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(photo.read_bytes())
    (tmp_path / "notes.txt").write_text("not a photo")
    ds = PhotoFolder(tmp_path, "tiny")
    assert ds.classes == ["cats", "dogs"]
    got = {n: int(l) for n, l in zip(ds.names, ds.labels())}
    assert got == {"cats/b.png": 0, "dogs/a.png": 1, "loose.png": -1}
    x, y = ds[ds.names.index("dogs/a.png")]
    assert y == 1 and torch.equal(x, load_image(photo, "tiny"))
    assert [s.path.name for s in ds.skipped] == ["notes.txt"]
    with pytest.raises(ImageLoadError, match="no image"):
        PhotoFolder(_empty(tmp_path), "tiny")


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_labels_of_and_first_images():
    from zfcore.data import get_dataset

    ds = get_dataset("tiny", "val")
    assert torch.equal(notebook.labels_of(ds), ds.labels())
    items = [(torch.zeros(3), 2), (torch.zeros(3), 0)]  # a plain Dataset of items
    assert notebook.labels_of(items).tolist() == [2, 0]
    x, x01 = notebook.first_images("tiny", 3)
    assert torch.equal(x, ds.images([0, 1, 2])[0]) and torch.equal(x01, ds.scenes([0, 1, 2]).images)
    assert len(notebook.first_images("tiny", 10**6)[0]) == len(ds)  # no more than the split has
