"""The study recipe: results round-trip through plain data, studies are keyed and built once."""

from dataclasses import dataclass, field

import pytest
import torch

from zfcore import models
from zfcore.cache import load_tensors, save_tensors
from zfcore.study import Result, StudyError, cached_study, study_key


@dataclass
class _Inner(Result):
    values: torch.Tensor
    name: str


@dataclass
class _Outer(Result):
    size: tuple
    names: list
    scores: dict
    inner: dict = field(default_factory=dict)
    note: str = "default"


def test_a_result_survives_the_cache_as_plain_data(tmp_path):
    r = _Outer((3, 4), ["a", "b"], {"x": torch.arange(3)}, {"k": 1})
    d = r.to_dict()
    assert d == {
        "size": (3, 4),
        "names": ["a", "b"],
        "scores": d["scores"],
        "inner": {"k": 1},
        "note": "default",
    }
    save_tensors(tmp_path / "r.pt", d)
    back = _Outer.from_dict(load_tensors(tmp_path / "r.pt"))
    assert back.size == (3, 4) and isinstance(back.size, tuple)  # the cache stores a list
    assert back.names == ["a", "b"] and isinstance(back.names, list)
    assert torch.equal(back.scores["x"], torch.arange(3))


def test_fields_added_later_take_their_defaults():
    old = {"size": [1, 2], "names": [], "scores": {}}
    assert _Outer.from_dict(old).note == "default"


def test_a_nested_result_becomes_its_dict():
    d = _Outer((1,), [], {}, {"i": _Inner(torch.ones(2), "n")}).to_dict()
    assert set(d["inner"]["i"]) == {"values", "name"}


def test_the_key_names_what_decides_the_result():
    torch.manual_seed(0)
    m = models.zfnet(width=0.125, image_size=64, num_classes=10)
    key = study_key(3, m, "tiny", {"n": 5})
    assert key["version"] == 3 and key["model"] == models.model_fingerprint(m) and key["n"] == 5
    assert "profile" in key and "data" not in key
    narrow = study_key(3, m, "tiny", {"n": 5}, data={"name": "tiny"})
    assert narrow["data"] == {"name": "tiny"} and "profile" not in narrow
    with pytest.raises(StudyError, match="model"):
        study_key(3, m, "tiny", {"model": "mine"})


def test_a_study_is_built_once_and_rebuilt_when_its_settings_change(tmp_path):
    from zfcore.profiles import get_profile

    P = get_profile("tiny", cache_dir=tmp_path)
    calls = []

    def build():
        calls.append(1)
        return {"v": torch.tensor([len(calls)])}

    a = cached_study("demo", 1, None, P, {"n": 1}, build)
    b = cached_study("demo", 1, None, P, {"n": 1}, build)
    c = cached_study("demo", 1, None, P, {"n": 2}, build)
    d = cached_study("demo", 2, None, P, {"n": 1}, build)
    e = cached_study("demo", 1, None, P, {"n": 1}, build, cache=False)
    assert [int(x["v"]) for x in (a, b, c, d, e)] == [1, 1, 2, 3, 4]
