"""Verdicts that could have come out otherwise: an effect, its uncertainty, and one of three words.

Every claim of the paper that a notebook tests is reduced to a signed effect ``model - control``
(positive when the paper is right), a 95 % interval for it, and a verdict:

* ``held``: the whole interval lies above ``margin`` (the effect is there and beyond noise);
* ``did not hold``: the whole interval lies below ``margin`` (the opposite was measured);
* ``within noise``: the interval contains ``margin``.

The interval comes from seeds (:func:`from_samples`, a t-interval over independent trainings),
from a paired bootstrap over evaluation images (:func:`paired_bootstrap`, e.g. two networks'
per-image correctness on the same validation set; seed variance is then *not* included and the
:attr:`Verdict.source` says so), or from a bootstrap of any per-item statistic
(:func:`bootstrap`). Each notebook prints :attr:`Verdict.rule` before the verdict and records
``verdict_<claim>`` (one of :data:`VERDICTS`) with the effect and its interval
(:meth:`Verdict.record`).

>>> v = from_interval("demo", effect=2.0, low=0.5, high=3.5)
>>> v.verdict
'held'
>>> from_interval("demo", effect=0.2, low=-0.5, high=0.9).verdict
'within noise'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ZFCoreError

__all__ = [
    "VERDICTS",
    "Verdict",
    "decide",
    "from_interval",
    "from_samples",
    "paired_bootstrap",
    "unpaired_bootstrap",
    "hierarchical_bootstrap",
    "equivalence",
    "bootstrap",
    "binomial_se",
    "VerdictError",
]

#: The only three words a verdict may take.
VERDICTS = ("held", "did not hold", "within noise")

#: Two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom (then the normal's).
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


class VerdictError(ZFCoreError, ValueError):
    """A verdict asked of too few samples, or of numbers that are not finite."""


def decide(low: float, high: float, margin: float = 0.0) -> str:
    """``held`` if ``low > margin``, ``did not hold`` if ``high < margin``, else
    ``within noise``."""
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise VerdictError(f"interval ({low}, {high}) must be finite with low <= high")
    if low > margin:
        return "held"
    if high < margin:
        return "did not hold"
    return "within noise"


@dataclass(frozen=True)
class Verdict:
    """A claim's signed effect (positive = the paper's direction), its 95 % interval and verdict."""

    claim: str
    effect: float
    low: float
    high: float
    verdict: str
    source: str  # where the uncertainty comes from, e.g. "3 seeds" or "bootstrap over 2000 images"
    margin: float = 0.0
    unit: str = ""

    @property
    def rule(self) -> str:
        """The rule, printed before the verdict."""
        u = f" {self.unit}" if self.unit else ""
        return (
            f"rule for '{self.claim}': effect = model - control (positive = as the paper says); "
            f"95 % interval from {self.source}; held if the interval lies above "
            f"{self.margin:g}{u}, did not hold if it lies below, else within noise"
        )

    def __str__(self) -> str:
        u = f" {self.unit}" if self.unit else ""
        return (
            f"{self.claim}: effect {self.effect:+.3g}{u} [95 % {self.low:+.3g}, {self.high:+.3g}] "
            f"-> {self.verdict}"
        )

    def as_record(self) -> dict[str, Any]:
        """Flat JSON keys: ``verdict_<claim>``, ``<claim>_effect``, ``_ci_low``, ``_ci_high``,
        ``_uncertainty``."""
        c = self.claim
        return {
            f"verdict_{c}": self.verdict,
            f"{c}_effect": self.effect,
            f"{c}_ci_low": self.low,
            f"{c}_ci_high": self.high,
            f"{c}_uncertainty": self.source,
        }

    def record(self, report) -> "Verdict":
        """Record into a :class:`zfcore.report.Report` and return self."""
        report.record(**self.as_record())
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def _claim(claim: str) -> str:
    if not isinstance(claim, str) or not claim or not claim.replace("_", "").isalnum():
        raise VerdictError(
            f"claim {claim!r} must be a non-empty name of letters, digits and '_' "
            f"(it becomes the JSON key verdict_<claim>)"
        )
    return claim


def from_interval(
    claim: str,
    effect: float,
    low: float,
    high: float,
    *,
    source: str = "given interval",
    margin: float = 0.0,
    unit: str = "",
) -> Verdict:
    """A verdict from an interval computed elsewhere."""
    return Verdict(
        _claim(claim),
        float(effect),
        float(low),
        float(high),
        decide(float(low), float(high), margin),
        source,
        float(margin),
        unit,
    )


def _t975(dof: int) -> float:
    return _T975[dof - 1] if dof <= len(_T975) else 1.96


def from_samples(
    claim: str,
    model: Sequence[float],
    control: "Sequence[float] | float" = 0.0,
    *,
    paired: bool = False,
    margin: float = 0.0,
    unit: str = "",
    what: str = "seeds",
) -> Verdict:
    """A verdict from independent repeats (seeds): the t-interval of
    ``mean(model) - mean(control)``.

    ``control`` is a number (a fixed level such as chance) or repeats of its own (Welch's
    interval; ``paired=True`` pairs repeat ``i`` of both, e.g. the same seed).
    """
    a = np.asarray(model, dtype=float)
    if a.ndim != 1 or len(a) < 2 or not np.isfinite(a).all():
        raise VerdictError(f"'{claim}' needs at least 2 finite repeats of the model, got {list(a)}")
    if np.ndim(control) == 0:
        d, se, dof = a.mean() - float(control), a.std(ddof=1) / math.sqrt(len(a)), len(a) - 1
        n = f"{len(a)} {what}"
    else:
        b = np.asarray(control, dtype=float)
        if len(b) < 2 or not np.isfinite(b).all():
            raise VerdictError(
                f"'{claim}' needs at least 2 finite repeats of the control, got {list(b)}"
            )
        if paired:
            if len(a) != len(b):
                raise VerdictError(
                    f"'{claim}': paired repeats differ in number ({len(a)} vs {len(b)})"
                )
            diff = a - b
            d, se, dof = diff.mean(), diff.std(ddof=1) / math.sqrt(len(a)), len(a) - 1
        else:
            va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
            d, se = a.mean() - b.mean(), math.sqrt(va + vb)
            dof = max(
                1, int((va + vb) ** 2 / ((va**2) / (len(a) - 1) + (vb**2) / (len(b) - 1) + 1e-300))
            )
        n = f"{len(a)} vs {len(b)} {what}"
    h = _t975(dof) * se
    return from_interval(
        claim, d, d - h, d + h, source=f"t-interval over {n}", margin=margin, unit=unit
    )


def paired_bootstrap(
    claim: str,
    model: Sequence[float],
    control: Sequence[float],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    margin: float = 0.0,
    unit: str = "",
    scale: float = 1.0,
    stat: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Verdict:
    """A verdict from per-item values of the model and the control on the same items.

    ``model[i]`` and ``control[i]`` are measured on item ``i`` (e.g. 1.0 if image ``i`` is
    classified correctly); items are resampled together, so what the two share cancels. The
    effect is ``scale * (mean(model) - mean(control))`` (``scale=100`` for percentage points).
    Seed variance is not included: the source says so.
    """
    a, b = np.asarray(model, dtype=float), np.asarray(control, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise VerdictError(
            f"'{claim}': model and control need the same >= 2 items, got {a.shape} and {b.shape}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise VerdictError(f"'{claim}': per-item values must be finite")
    stat = stat or (lambda x: x.mean(axis=-1))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    diffs = scale * (stat(a[idx]) - stat(b[idx]))
    d = scale * float(stat(a[None])[0] - stat(b[None])[0])
    low, high = np.quantile(diffs, [0.025, 0.975])
    return from_interval(
        claim,
        d,
        float(low),
        float(high),
        margin=margin,
        unit=unit,
        source=f"paired bootstrap over {len(a)} items ({n_boot} resamples; seed variance not "
        "included)",
    )


def unpaired_bootstrap(
    claim: str,
    model: Sequence[float],
    control: Sequence[float],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    margin: float = 0.0,
    unit: str = "",
    scale: float = 1.0,
    stat: Callable[[np.ndarray], np.ndarray] | None = None,
    what: str = "items",
) -> Verdict:
    """A verdict on ``scale * (stat(model) - stat(control))`` where the two are different items
    (e.g. the first-layer filters of two networks), each resampled on its own. ``stat`` maps a
    ``(n_boot, n)`` array to ``(n_boot,)`` (default: the mean of each row)."""
    a, b = np.asarray(model, dtype=float), np.asarray(control, dtype=float)
    if a.ndim != 1 or b.ndim != 1 or len(a) < 2 or len(b) < 2:
        raise VerdictError(
            f"'{claim}': model and control need >= 2 values each, got {a.shape} and {b.shape}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise VerdictError(f"'{claim}': values must be finite")
    stat = stat or (lambda x: x.mean(axis=-1))
    rng = np.random.default_rng(seed)
    diffs = scale * (
        stat(a[rng.integers(0, len(a), size=(n_boot, len(a)))])
        - stat(b[rng.integers(0, len(b), size=(n_boot, len(b)))])
    )
    d = scale * float(stat(a[None])[0] - stat(b[None])[0])
    low, high = np.quantile(diffs, [0.025, 0.975])
    return from_interval(
        claim,
        d,
        float(low),
        float(high),
        margin=margin,
        unit=unit,
        source=f"bootstrap over {len(a)} and {len(b)} {what} ({n_boot} resamples; "
        f"seed variance not included)",
    )


def bootstrap(
    claim: str,
    values: Sequence[float],
    control: float = 0.0,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    margin: float = 0.0,
    unit: str = "",
    scale: float = 1.0,
) -> Verdict:
    """A verdict on ``scale * (mean(values) - control)`` from a bootstrap over the items."""
    a = np.asarray(values, dtype=float)
    if a.ndim != 1 or len(a) < 2 or not np.isfinite(a).all():
        raise VerdictError(f"'{claim}' needs at least 2 finite values, got shape {a.shape}")
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1)
    low, high = np.quantile(scale * (means - control), [0.025, 0.975])
    return from_interval(
        claim,
        scale * (a.mean() - control),
        float(low),
        float(high),
        margin=margin,
        unit=unit,
        source=f"bootstrap over {len(a)} items ({n_boot} resamples)",
    )


def binomial_se(p: float, n: int) -> float:
    """Standard error of a proportion ``p`` measured on ``n`` items (e.g. an error rate)."""
    if n < 1:
        raise VerdictError(f"n must be >= 1, not {n}")
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def _seed_deviations(networks: "dict[str, dict[str, np.ndarray]]") -> list[dict[str, float]]:
    """Per seed of every network trained at least twice: its deviation from its network's mean,
    per item set, scaled by ``sqrt(s / (s - 1))`` (:func:`hierarchical_bootstrap`'s pooled seed
    spread)."""
    pool = []
    for sets in networks.values():
        arrays = {items: np.asarray(a, dtype=float) for items, a in sets.items()}
        s = next(iter(arrays.values())).shape[0]
        if s < 2:
            continue
        scale = np.sqrt(s / (s - 1))
        for k in range(s):
            pool.append({i: float((a[k].mean() - a.mean()) * scale) for i, a in arrays.items()})
    return pool


def hierarchical_bootstrap(
    claim: str,
    networks: "dict[str, dict[str, np.ndarray]]",
    stat: Callable[[dict], np.ndarray],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    margin: float = 0.0,
    unit: str = "",
    what: str = "validation images",
    borrow_seed_spread: bool = True,
    spread_from: "dict[str, dict[str, np.ndarray]] | None" = None,
) -> Verdict:
    """A verdict on ``stat(means)`` over networks trained with several seeds each, whose interval
    includes the variance between seeds.

    ``networks[name][items]`` is a ``(seeds, n_items)`` array: one row of per-item values (e.g.
    1.0 where image ``i`` is classified correctly) per training seed of network ``name``, on the
    item set ``items`` (``"val"``, ``"train"``, ...). Each resample draws, independently for each
    network, its seeds with replacement, then, once per item set and shared by every network, the
    items with replacement (the same images for every network, so what they share cancels).
    ``stat`` maps ``{name: {items: (n_boot,) mean}}`` to ``(n_boot,)`` effects; the effect itself
    is ``stat`` of the means over every seed and item.

    A network trained once has no seeds of its own to resample. With ``borrow_seed_spread`` (the
    default) it borrows the spread of the networks trained several times, assuming one seed
    variance for every layout (a pooled variance component): each resample adds to its value
    one seed's deviation from its own network's mean, drawn from every such seed of every such
    network (the same seed for all of the network's item sets), scaled by ``sqrt(s / (s - 1))``
    because a deviation from the mean of ``s`` seeds is that much smaller than one from the true
    mean. ``spread_from`` (default ``networks``) names the networks whose seeds make that pool:
    pass every network of the study so the pool is as large as it can be. With no network
    trained twice, or ``borrow_seed_spread=False``, a network with one seed contributes no seed
    variance; the source says which.
    """
    if not networks:
        raise VerdictError(f"'{claim}' needs at least one network")
    rng = np.random.default_rng(seed)
    sizes: dict[str, int] = {}
    for name, sets in networks.items():
        for items, a in sets.items():
            a = np.asarray(a, dtype=float)
            if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 2 or not np.isfinite(a).all():
                raise VerdictError(
                    f"'{claim}': networks[{name!r}][{items!r}] must be a finite (seeds, items) "
                    f"array with >= 2 items, got shape {a.shape}"
                )
            if sizes.setdefault(items, a.shape[1]) != a.shape[1]:
                raise VerdictError(
                    f"'{claim}': every network needs the same {items!r} items "
                    f"({sizes[items]} vs {a.shape[1]} in {name!r})"
                )
    item_idx = {items: rng.integers(0, n, size=(n_boot, n)) for items, n in sizes.items()}
    pool = _seed_deviations(networks if spread_from is None else spread_from)
    pool = pool if borrow_seed_spread else []
    borrowed = 0
    boot, full = {}, {}
    for name, sets in networks.items():
        n_seeds = {np.asarray(a).shape[0] for a in sets.values()}
        if len(n_seeds) != 1:
            raise VerdictError(
                f"'{claim}': network {name!r} has different seed counts per item set"
            )
        s = n_seeds.pop()
        seed_idx = rng.integers(0, s, size=(n_boot, s))
        boot[name], full[name] = {}, {}
        for items, a in sets.items():
            a = np.asarray(a, dtype=float)
            per_seed = np.stack(
                [row[item_idx[items]].mean(1) for row in a], axis=1
            )  # (n_boot, seeds)
            boot[name][items] = np.take_along_axis(per_seed, seed_idx, axis=1).mean(1)
            full[name][items] = np.array([a.mean()])
        donors = [d for d in pool if set(sets) <= set(d)] if s == 1 else []
        if donors:
            pick = rng.integers(0, len(donors), size=n_boot)
            for items in sets:
                boot[name][items] = boot[name][items] + np.array([d[items] for d in donors])[pick]
            borrowed += 1
    values = np.asarray(stat(boot), dtype=float)
    point = float(np.asarray(stat(full), dtype=float).reshape(-1)[0])
    low, high = np.quantile(values, [0.025, 0.975])
    counts = sorted({np.asarray(next(iter(s.values()))).shape[0] for s in networks.values()})
    seeds_text = "/".join(str(c) for c in counts) + (" seed" if counts == [1] else " seeds")
    singles = sum(np.asarray(next(iter(s.values()))).shape[0] == 1 for s in networks.values())
    if borrowed:
        lacking = (
            f" (the {'network' if borrowed == 1 else f'{borrowed} networks'} with one seed "
            f"{'borrows' if borrowed == 1 else 'borrow'} the seed spread pooled from the "
            f"{len(pool)} seeds of the networks trained several times)"
        )
    elif counts == [1]:
        lacking = " (one seed: seed variance not included)"
    else:
        lacking = " (a network with one seed adds no seed variance)" if singles else ""
    users = {k: sum(k in sets for sets in networks.values()) for k in sizes}
    sets_text = " and ".join(
        f"{n} {what if k == 'val' else k.replace('_', ' ')}" for k, n in sizes.items()
    )
    shared = (
        "shared by the networks"
        if all(u > 1 for u in users.values())
        else "each network's own"
        if all(u == 1 for u in users.values())
        else "shared where common"
    )
    return from_interval(
        claim,
        point,
        float(low),
        float(high),
        margin=margin,
        unit=unit,
        source=f"hierarchical bootstrap: {seeds_text} per network resampled, then the "
        f"{sets_text}, {shared} ({n_boot} resamples){lacking}",
    )


def equivalence(claim: str, verdict: Verdict, margin: float) -> Verdict:
    """The claim "no more than ``margin`` of difference", decided before the numbers are seen:
    ``margin - |effect|`` with the interval's matching bound. Held when the whole interval of
    ``verdict``'s effect lies within ``[-margin, margin]``; did not hold when it lies wholly
    outside; else within noise."""
    if not margin > 0:
        raise VerdictError(f"an equivalence margin must be positive, not {margin!r}")
    worst = max(abs(verdict.low), abs(verdict.high))
    best = 0.0 if verdict.low <= 0 <= verdict.high else min(abs(verdict.low), abs(verdict.high))
    return from_interval(
        claim,
        margin - abs(verdict.effect),
        margin - worst,
        margin - best,
        source=f"{verdict.source}; equivalence margin "
        f"{margin:g}{' ' + verdict.unit if verdict.unit else ''}"
        f" fixed in advance: effect = margin - |difference|",
        unit=verdict.unit,
    )
