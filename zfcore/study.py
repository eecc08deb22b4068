"""A study: one analysis of a profile's data by one model, run once and then read from the cache.

Every figure of the paper that measures something over many images (the top-9 of Fig. 2, the
pointing game of Fig. 7, the invariance curves of Fig. 5, Table 1's correspondence, the transfer
tables of section 5) is such a study. Each is the same recipe: the profile, a dataset, the
settings that decide the result, a hash of those and of the model's weights, and a build step
whose result is stored as plain tensors, numbers and lists. This module holds that recipe once:

* :class:`Result`, the base of the result dataclasses: ``to_dict`` / ``from_dict`` over their
  fields (what :func:`zfcore.cache.cached` stores safely), so a result class declares fields and
  nothing else;
* :func:`plain`, the one conversion of a value to JSON (numbers, lists, dicts; a result through
  ``to_dict``; NaN and infinities to ``null``), used by every notebook record and ``explain``;
* :func:`cached_study`, which keys a study by ``kind``, its ``version``, the model's fingerprint,
  the profile's identity (or a narrower ``data`` identity) and its settings, and builds it once.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Mapping

from torch import nn

from .cache import cached
from .errors import ZFCoreError
from .models import model_fingerprint
from .profiles import Profile, get_profile

__all__ = ["Result", "StudyError", "plain", "study_key", "cached_study"]


class StudyError(ZFCoreError, ValueError):
    """Study settings that clash with the key's own entries."""


def plain(value: Any) -> Any:
    """``value`` as JSON: a :class:`Result` through ``to_dict``, tensors and arrays as (nested)
    lists, numpy and torch scalars as Python numbers, non-finite floats as ``None``, mapping
    keys as strings. The one serialisation of results to JSON."""
    v = value.to_dict() if isinstance(value, Result) else value
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): plain(x) for k, x in v.items()}
    if hasattr(v, "tolist"):
        return plain(v.tolist())
    return v


def _fields(value: Any) -> Any:
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _fields(v) for k, v in value.items()}
    return value


def _is_tuple(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return text.split("[")[0].strip() in ("tuple", "Tuple")


class Result:
    """Base of a result dataclass: a plain-data round trip over its fields.

    ``to_dict()`` maps each field to its value (a nested :class:`Result` to its own dict);
    ``from_dict(d)`` builds the dataclass back, turning lists into tuples where a field is
    annotated ``tuple`` (the cache stores tuples as lists) and leaving absent fields at their
    defaults, so entries written before a field was added still load. Override both only where
    a field needs more than that (a dict of results, say).
    """

    def to_dict(self) -> dict:
        return {f.name: _fields(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict):
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name in d:
                v = d[f.name]
                kw[f.name] = tuple(v) if isinstance(v, list) and _is_tuple(f.type) else v
        return cls(**kw)


def study_key(
    version: Any,
    model: "nn.Module | None",
    profile: "str | Profile",
    settings: dict,
    data: "dict | None" = None,
) -> dict:
    """What decides a study's result: its ``version``, the model's weights (fingerprint), the
    profile's identity (or ``data``, a narrower identity of the images used) and ``settings``."""
    P = get_profile(profile)
    key = {"version": version}
    if model is not None:
        key["model"] = model_fingerprint(model)
    key.update({"data": data} if data is not None else {"profile": P.identity()})
    clash = sorted(set(key) & set(settings))
    if clash:
        raise StudyError(f"study settings may not use the reserved key(s) {clash}")
    key.update(settings)
    return key


def cached_study(
    kind: str,
    version: Any,
    model: "nn.Module | None",
    profile: "str | Profile",
    settings: dict,
    build: Callable[[], Any],
    *,
    data: "dict | None" = None,
    cache: bool = True,
) -> Any:
    """``build()``'s plain-data result, read from ``<cache_dir>/<kind>/<hash>/`` when a study
    with the same :func:`study_key` was run before (``cache=False`` always builds)."""
    if not cache:
        return build()
    P = get_profile(profile)
    return cached(P.cache_dir, kind, study_key(version, model, P, settings, data), build)
