"""How a README headline reads a notebook's numbers (:mod:`zfcore.paper.readme`).

Each paper module's ``HEADLINES`` pairs a claim of the paper with a function of :class:`Numbers`,
the notebook's JSON: a missing key reads as ``n/a`` and is noted, so a headline never invents a
number and a renamed key shows up in ``python -m zfcore.paper.readme readme``'s notes.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping

__all__ = ["Numbers", "MISSING", "NOT_RECORDED", "layer_keys"]

#: What a headline shows for a number the notebook did not record.
MISSING = "n/a"

#: A headline whose networks the comparison study has not recorded yet.
NOT_RECORDED = (
    "not recorded yet: the comparison study's networks for this row are still to train "
    "(`python -m zfcore.paper.comparisons --profile mini --list`)"
)


def layer_keys(prefix: str, suffix: str, layers: Iterable[int] = range(1, 6)) -> list[str]:
    """``[f"{prefix}layer{i}{suffix}" for i in layers]``: one key per layer."""
    return [f"{prefix}layer{i}{suffix}" for i in layers]


class Numbers:
    """Read one notebook's JSON for the README; a missing key reads as ``n/a`` and is noted."""

    def __init__(self, notebook: str, data: Mapping[str, Any]):
        self.notebook, self.data, self.missing = notebook, data, []

    def get(self, key: str) -> Any:
        v = self.data.get(key)
        if v is None:
            self.missing.append(key)
        return v

    def peek(self, key: str) -> Any:
        """The value, or None, without noting it missing: for a key a notebook records only
        sometimes (a flag saying a part was skipped), read to choose the wording."""
        return self.data.get(key)

    def f(self, key: str, fmt: str = ".2f", *, scale: float = 1.0, unit: str = "") -> str:
        """``key`` times ``scale`` in ``fmt`` plus ``unit``; ``n/a`` when missing."""
        v = self.get(key)
        if v is None:
            return MISSING
        try:
            return f"{v * scale if scale != 1 else v:{fmt}}{unit}"
        except (TypeError, ValueError):  # a key whose meaning changed (now a list, a string ...)
            self.missing.append(f"{key} as a number ({fmt}), found {v!r}")
            return MISSING

    def pct(self, key: str, digits: int = 0) -> str:
        """A share in [0, 1] as a percentage."""
        return self.f(key, f".{digits}f", scale=100, unit=" %")

    def calc(self, fn: Callable[..., float], keys: Iterable[str], fmt: str, unit: str = "") -> str:
        """``fn(*values)`` in ``fmt`` when every key is there."""
        vals = [self.get(k) for k in keys]
        return MISSING if any(v is None for v in vals) else f"{fn(*vals):{fmt}}{unit}"

    def seq(self, keys: Iterable[str], fmt: str = ".2f", sep: str = ", ", **kw) -> str:
        return sep.join(self.f(k, fmt, **kw) for k in keys)

    def span(self, keys: Iterable[str], fmt: str = ".2f") -> str:
        """``min-max`` of the values that are there."""
        vals = [v for v in (self.get(k) for k in keys) if v is not None]
        return MISSING if not vals else f"{min(vals):{fmt}}-{max(vals):{fmt}}"

    def word(self, key: str, yes: str, no: str) -> str:
        v = self.get(key)
        return MISSING if v is None else (yes if v else no)

    def sizes(self, key: str) -> list[int]:
        """The ``n`` of keys ``<key>_n<n>`` (e.g. images per class), ascending."""
        pat = re.compile(re.escape(key) + r"_n(\d+)$")
        return sorted(int(m.group(1)) for k in self.data if (m := pat.match(k)))
