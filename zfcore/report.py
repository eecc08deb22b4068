"""What a notebook leaves on disk: its figures and the numbers it measured.

Each notebook saves ``figures/<profile>/<notebook>_<name>.png`` and one
``figures/<profile>/<notebook>.json`` of flat keys that say what they are (for example
``pointing_game_hit_rate``), so a reader, a test or a lab's CI can check a claim without opening
the notebook. Writes are atomic (:mod:`zfcore.cache`).
"""
from __future__ import annotations

import csv
import io
import json
import math
import numbers
from pathlib import Path
from typing import Any, Iterable, Mapping

from .cache import atomic_savefig, atomic_write_json, atomic_write_text
from .profiles import Profile, get_profile

__all__ = ["Report"]


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if hasattr(v, "tolist"):
        return _plain(v.tolist())
    return v


class Report:
    """Collects one notebook's figures and numbers under ``figures/<profile>/``.

    >>> rep = Report("07_occlusion", "tiny")            # doctest: +SKIP
    >>> rep.savefig(fig, "panels")                       # figures/tiny/07_occlusion_panels.png
    >>> rep.record(pointing_game_hit_rate=0.9)           # written by rep.save()
    """

    def __init__(self, notebook: str, profile: "str | Profile"):
        self.notebook = notebook
        self.profile = get_profile(profile)
        self.dir = self.profile.figures_dir
        self.numbers: dict[str, Any] = {"profile": self.profile.name}
        self.figures: list[str] = []

    def path(self, name: str, suffix: str = ".png") -> Path:
        return self.dir / f"{self.notebook}_{name}{suffix}"

    def savefig(self, fig, name: str, **kwargs) -> Path:
        """Save ``fig`` as ``<notebook>_<name>.png`` (atomically) and return the path."""
        p = atomic_savefig(fig, self.path(name), **kwargs)
        if name not in self.figures:
            self.figures.append(name)
        return p

    def record(self, **numbers: Any) -> dict:
        """Remember flat, self-describing numbers; returns them (so a notebook can display them)."""
        out = {k: _plain(v) for k, v in numbers.items()}
        self.numbers.update(out)
        return out

    def table(self, rows: Iterable[Mapping[str, Any]], name: str) -> Path:
        """Write ``rows`` (dicts with the same keys) as ``<notebook>_<name>.csv``."""
        rows = [{k: _plain(v) for k, v in r.items()} for r in rows]
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return atomic_write_text(self.path(name, ".csv"), buf.getvalue())

    def save(self) -> Path:
        """Write ``<notebook>.json`` with every recorded number and the list of figures."""
        data = dict(self.numbers)
        data["figures"] = [self.path(n).name for n in self.figures]
        return atomic_write_json(self.dir / f"{self.notebook}.json", data)

    def load(self) -> dict:
        p = self.dir / f"{self.notebook}.json"
        return json.loads(p.read_text()) if p.is_file() else {}
