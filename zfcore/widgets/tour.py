"""Drive the explorer like a user and time it (notebook 12, ``benchmarks/explorer.py``).

* :class:`Timings`: seconds per user action, in order (the view records one per callback);
* :func:`scripted_tour`: a deterministic sequence of user actions played through the view's own
  widget callbacks (layer, grid cell, strongest map, projection rule, image), each timed from the
  widget event to the last panel redrawn.

Notebook 12 records the tour's median and 95th percentile; the benchmark compares the same tour
with a naive redraw of every panel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .state import RULES, ExplorerState

__all__ = ["Timings", "scripted_tour"]


@dataclass
class Timings:
    """Seconds per user action (callback), in order: ``(action, seconds)``; ``states`` (filled by
    :func:`scripted_tour`) holds the session state after each record."""

    records: list[tuple[str, float]] = field(default_factory=list)
    states: list[ExplorerState] = field(default_factory=list)

    def add(self, action: str, seconds: float) -> None:
        self.records.append((action, float(seconds)))

    def seconds(self, skip_first: bool = False) -> np.ndarray:
        s = np.array([t for _, t in self.records], dtype=float)
        return s[1:] if skip_first else s

    def percentile(self, q: float, skip_first: bool = True) -> float:
        s = self.seconds(skip_first)
        return float(np.percentile(s, q)) if s.size else float("nan")


def scripted_tour(app, steps: int = 40, seed: int = 0, restore: bool = True) -> Timings:
    """Drive ``app`` (an :class:`~zfcore.widgets.view.Explorer`) like a user, through its
    widgets' own callbacks: ``steps`` actions drawn (deterministically from ``seed``) from
    choosing a layer, clicking a cell of the activation grid, asking for the strongest map,
    switching the projection rule, and choosing another data set image or sample photo. Returns
    the :class:`Timings` of those steps, named by kind (``layer``, ``cell``, ``strongest``,
    ``rule``, ``image``; each from the widget event to the last panel redrawn), with the state
    after each. With ``restore`` the app returns to the state it started from. The explorer
    benchmark and notebook 12 use it."""
    rng = np.random.default_rng(seed)
    s = app.session
    kinds = ("layer", "cell", "cell", "strongest", "rule", "image")
    out = Timings()
    before = s.state
    for i in range(steps):
        start = len(app.timings.records)
        kind = kinds[i % len(kinds)] if i < len(kinds) else kinds[int(rng.integers(len(kinds)))]
        if kind == "layer":
            others = [l for l in s.layers if l != s.state.layer]
            app.layer_tb.value = others[int(rng.integers(len(others)))]
        elif kind == "cell":
            count = s.geometry().count
            k = int(rng.integers(count))
            if s.geometry().first + k == s.state.unit:
                k = (k + 1) % count
            app.grid_buttons[k].click()
        elif kind == "strongest":
            app.strongest_btn.click()
        elif kind == "rule":
            app.rule_tb.value = RULES[(RULES.index(s.state.rule) + 1) % len(RULES)]
        elif rng.random() < 0.75 or not s.sample_names():
            if s.state.source != "dataset":
                app.source_tb.value = "dataset"
            app.index_box.value = int(
                (s.state.index + 1 + rng.integers(len(s.dataset) - 1)) % len(s.dataset)
            )
        else:
            names = [n for n in s.sample_names() if n != s.state.sample]
            app.source_tb.value = "sample"
            app.sample_dd.value = names[int(rng.integers(len(names)))]
        done = app.timings.records[start:]
        if done:  # one gesture may fire two callbacks (source, then image): one step
            out.add(kind, sum(t for _, t in done))
            out.states.append(s.state)
    if restore:
        app.show_state(before)
    return out
