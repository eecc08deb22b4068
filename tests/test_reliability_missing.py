"""Missing data sets and weights: the error names what is missing, where to put it and
how to fetch it, at once (no download attempt offline) and without a chained traceback."""

import re
import urllib.error
from pathlib import Path

import pytest

from zfcore import models, pretrained
from zfcore.profiles import get_profile

URL = re.compile(r"https?://\S+")


def _clean(e: BaseException) -> str:
    assert e.__cause__ is None, "no chained traceback under the message"
    assert e.__context__ is None or e.__suppress_context__
    return str(e)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.mark.parametrize("name", ["AlexNet_Weights", "VGG16_Weights"])
def test_missing_pretrained_weights_offline(empty_hub, name):
    import torchvision.models as tvm

    weights = getattr(tvm, name).IMAGENET1K_V1
    with pytest.raises(pretrained.MissingWeightsError) as e:
        pretrained.torchvision_state(weights, download=False)
    msg = _clean(e.value)
    path = pretrained.torchvision_weights_path(weights)
    assert str(empty_hub) in str(path)
    for what in (
        path.name,
        str(path.parent),
        weights.url,
        f"curl -L -o {path} {weights.url}",
        "ZFCORE_DOWNLOAD=1",
    ):
        assert what in msg, f"{what!r} missing from: {msg}"
    assert isinstance(e.value, FileNotFoundError)


def test_public_builder_fails_at_once_offline(empty_hub):
    with pytest.raises(pretrained.MissingWeightsError, match="alexnet-owt"):
        models.alexnet(pretrained=True)  # ZFCORE_DOWNLOAD=0 in tests: no network try


def test_failed_download_names_the_reason_and_the_manual_route(empty_hub, monkeypatch):
    from torchvision.models import AlexNet_Weights

    w = AlexNet_Weights.IMAGENET1K_V1

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(type(w), "get_state_dict", offline)
    with pytest.raises(pretrained.MissingWeightsError) as e:
        pretrained.torchvision_state(w, download=True)
    msg = _clean(e.value)
    assert "download failed" in msg and "name resolution" in msg and w.url in msg


def _missing_data_calls(root: Path):
    from zfcore import data, transfer

    imagenet = get_profile("imagenet", data_root=root)
    return {
        "imagenette": lambda: data.get_dataset(get_profile("imagenette", data_root=root), "train"),
        "imagenet": lambda: data.get_dataset(imagenet, "val"),
        "caltech101": lambda: transfer.real_transfer_data(imagenet, "caltech101"),
        "caltech256": lambda: transfer.real_transfer_data(imagenet, "caltech256"),
        "voc2012": lambda: transfer.real_transfer_data(imagenet, "voc2012"),
    }


@pytest.mark.parametrize("name", ["imagenette", "imagenet", "caltech101", "caltech256", "voc2012"])
def test_missing_data_set_names_what_where_and_how(tmp_path, name, monkeypatch):
    from zfcore.data import DataNotFoundError

    monkeypatch.setenv("ZFCORE_DOWNLOAD", "0")
    root = tmp_path / "no-data-here"
    with pytest.raises(DataNotFoundError) as e:
        _missing_data_calls(root)[name]()
    msg = _clean(e.value)
    assert str(root) in msg, f"where to put it: {msg}"
    assert URL.search(msg), f"where to fetch it: {msg}"
    assert re.search(r"download=True|ZFCORE_DOWNLOAD|curl|wget|tar ", msg), (
        f"how to fetch it: {msg}"
    )
    assert isinstance(e.value, FileNotFoundError)
    assert not root.exists() or not any(root.rglob("*")), "nothing half-downloaded is left behind"


def test_missing_user_photo_folder(tmp_path):
    from zfcore.data.images import ImageLoadError, load_folder

    with pytest.raises(ImageLoadError) as e:
        load_folder(tmp_path / "my photos", "tiny")
    msg = _clean(e.value)
    assert str(tmp_path / "my photos") in msg and "no such folder" in msg
