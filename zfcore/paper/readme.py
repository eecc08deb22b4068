"""The README's results, generated from ``figures/<profile>/*.json``, never typed by hand.

Each paper module's ``HEADLINES`` says, for its notebook, which paper claim a line of the README
reports and how its numbers read (a key the notebook no longer writes shows as ``n/a``); the
verdicts come from the notebooks' ``verdict_<claim>`` keys::

    python -m zfcore.paper.readme readme  # rewrite README.md's results, values and paper map
    python -m zfcore.paper.readme check   # exit 1, naming the lines, where README and JSON differ
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..cache import atomic_write_text
from ..locations import checkout_root
from ..report import ReportError
from . import items_table
from .verdicts import VERDICTS

__all__ = [
    "render_paper_map",
    "Numbers",
    "HEADLINES",
    "VALUES",
    "load_numbers",
    "render_block",
    "render_readme",
    "check_readme",
    "main",
]


# ---------------------------------------------------------------------------------------------
# The README's results, generated from figures/<profile>/*.json
# ---------------------------------------------------------------------------------------------

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
#: The generated notebook-to-paper table (README.md and CONTRIBUTING.md).
MAP_BEGIN, MAP_END = "<!-- paper-map:begin -->", "<!-- paper-map:end -->"
#: An inline generated value in the README's prose: ``<!-- value:NAME -->text<!-- /value -->``.
VALUE_RE = re.compile(r"<!-- value:([A-Za-z0-9_]+) -->(.*?)<!-- /value -->", re.DOTALL)
MISSING = "n/a"


class Numbers:
    """Read one notebook's JSON for the README; a missing key reads as ``n/a`` and is noted."""

    def __init__(self, notebook: str, data: Mapping[str, Any]):
        self.notebook, self.data, self.missing = notebook, data, []

    def get(self, key: str) -> Any:
        v = self.data.get(key)
        if v is None:
            self.missing.append(key)
        return v

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


def _layers(prefix: str, suffix: str, layers: Iterable[int] = range(1, 6)) -> list[str]:
    return [f"{prefix}layer{i}{suffix}" for i in layers]


def _transfer(n: Numbers) -> str:
    sizes = n.sizes("pretrained_accuracy_pct")
    if not sizes:
        n.missing.append("pretrained_accuracy_pct_n<N>")
        return MISSING
    lo, hi = sizes[0], sizes[-1]
    text = (
        f"{lo} training images per class: {n.f(f'pretrained_accuracy_pct_n{lo}', '.1f')} ± "
        f"{n.f(f'pretrained_accuracy_std_pct_n{lo}', '.1f')} % against "
        f"{n.f(f'scratch_accuracy_pct_n{lo}', '.1f')} ± "
        f"{n.f(f'scratch_accuracy_std_pct_n{lo}', '.1f')} % from "
        "scratch (which fits its training images: "
        f"{n.f(f'scratch_train_accuracy_pct_n{lo}', '.1f')} %)"
    )
    if hi != lo:
        text += (
            f" ({hi} per class: {n.f(f'pretrained_accuracy_pct_n{hi}', '.1f')} % against "
            f"{n.f(f'scratch_accuracy_pct_n{hi}', '.1f')} %)"
        )
    return text


def _sizes(n: Numbers) -> str:
    v = n.get("zfnet_spatial_sizes")
    return MISSING if v is None else " > ".join(str(s) for s in v)


_SD = "_below_random_in_sd"

#: A headline whose networks the comparison study has not recorded yet.
_NOT_RECORDED = (
    "not recorded yet: the comparison study's networks for this row are still to train "
    "(`python -m zfcore.comparisons --profile mini --list`)"
)

#: The README's headline numbers: ``(notebook, paper claim, measured(nums) -> text)``, in paper
#: order. A key a notebook no longer writes shows as ``n/a`` (``readme`` lists them); the verdicts
#: come from the notebooks' ``verdict_<claim>`` keys, in the table after this one.
HEADLINES: list[tuple[str, str, Callable[[Numbers], str]]] = [
    (
        "00_quickstart",
        "the network trained here: far above chance",
        lambda n: (
            f"test accuracy {n.calc(lambda e: 100 - e, ['test_top1_error'], '.1f', ' %')}, top-5 "
            "error "
            f"{n.f('test_top5_error', '.1f', unit=' %')} (chance accuracy "
            f"{n.calc(lambda e: 100 - e, ['chance_top1_error'], '.0f', ' %')})"
        ),
    ),
    (
        "01_architecture",
        "Fig. 3: 224 > 110 > 55 > 26 > 13 > 13 > 13 > 6",
        lambda n: (
            f"sizes measured by hooks: {_sizes(n)} "
            f"({n.word('sizes_match_fig3', 'as in Fig. 3', 'not as in Fig. 3')}); "
            f"{n.f('zfnet_parameters', '.2f', scale=1e-6, unit=' M')} parameters"
        ),
    ),
    (
        "02_deconvnet",
        "Fig. 1: unpooling needs the switches; overlapping pools share them",
        lambda n: (
            f"{n.pct('shared_switch_share_pool1', 1)} of pool-1 and "
            f"{n.pct('shared_switch_share_pool2', 1)} "
            f"of pool-2 switches are shared; `F.max_unpool2d` (which overwrites) would change the "
            f"projection by {n.pct('max_unpool2d_relative_change', 1)}"
        ),
    ),
    (
        "03_feature_visualization",
        "Fig. 2: top-9 become class-specific with depth",
        lambda n: (
            f"majority-class share of the top-9, layers 1-5: "
            f"{n.seq(_layers('', '_top9_majority_share'))} (chance {n.f('chance_majority_share')})"
        ),
    ),
    (
        "03_feature_visualization",
        "Fig. 2: projections sit on the object",
        lambda n: (
            f"share of projection energy inside the object box, layers 1-5: "
            f"{n.seq(_layers('', '_projection_energy_in_box'))} (box area "
            f"{n.span(_layers('', '_box_area_share'))})"
        ),
    ),
    (
        "03_feature_visualization",
        "a healthy network: every map fires",
        lambda n: (
            f"maps that never fire on {n.f('dead_maps_images', 'd')} validation images, layers "
            "1-7: "
            f"{n.seq(_layers('dead_map_share_', '', range(1, 8)), '.0f', ', ', scale=100)} %"
        ),
    ),
    (
        "04_training_evolution",
        "Fig. 4: lower layers converge first",
        lambda n: (
            f"median epoch from which a firing map's top-9 stay final, layers 1-5: "
            f"{n.seq(_layers('map_converged_epoch_median_', ''), 'g')} (rank correlation of depth "
            "with "
            f"the per-map epoch {n.f('fig4_lower_layers_converge_first_effect', '+.2f')})"
        ),
    ),
    (
        "04_training_evolution",
        "per-layer rates: freezing layers 1-2 once they settle, or slowing them, costs little",
        lambda n: (
            _NOT_RECORDED
            if n.get("per_layer_arms_recorded") is False
            else f"{n.f('per_layer_speedup_images_per_s', '.1f', unit='x')} faster steps once "
            "frozen; "
            f"validation accuracy after {n.f('layer_lr_schedule_epochs', 'g')} epochs "
            f"({n.f('seeds', 'd')} seeds "
            f"each): frozen {n.f('per_layer_val_accuracy', '.1f', unit=' %')}, early layers at "
            "0.1x the rate "
            f"{n.f('lower_rates_val_accuracy', '.1f', unit=' %')}, one global rate "
            f"{n.f('global_rate_val_accuracy', '.1f', unit=' %')}"
        ),
    ),
    (
        "05_invariance",
        "Fig. 5: layer 7 is more invariant than layer 1",
        lambda n: (
            "normalised distance growth, layer 1 / layer 7: "
            + ", ".join(
                f"{name} {n.f(f'{k}_growth_layer1')} / {n.f(f'{k}_growth_layer7')}"
                for name, k in (
                    ("translation", "translate_y"),
                    ("scale", "scale"),
                    ("rotation", "rotate"),
                )
            )
        ),
    ),
    (
        "05_invariance",
        "Fig. 5: output invariant to translation and scale, not rotation, except symmetric objects",
        lambda n: (
            "mean p(true class): "
            + ", ".join(
                f"{name} {n.f(f'{k}_mean_p_true_asymmetric_classes')}"
                for name, k in (
                    ("translation", "translate_y"),
                    ("scale", "scale"),
                    ("rotation", "rotate"),
                )
            )
            + f"; rotation-symmetric classes keep {n.f('rotate_mean_p_true_symmetric_classes')} "
            "under rotation"
        ),
    ),
    (
        "06_architecture_selection",
        "Fig. 6: 11x11/4 first layers alias more than 7x7/2",
        lambda n: (
            "filter energy above the stride's Nyquist frequency: "
            f"{n.pct('krizhevsky_aliased_energy')} "
            f"(11x11/4) against {n.pct('zf_aliased_energy')} (7x7/2); mid-frequency share "
            f"{n.pct('krizhevsky_mid_frequency_share')} against {n.pct('zf_mid_frequency_share')} "
            f"(means over {n.f('seeds', 'd')}+ seeds)"
        ),
    ),
    (
        "06_architecture_selection",
        "Fig. 6: 11x11/4 leaves dead filters",
        lambda n: (
            f"dead first-layer maps: {n.pct('krizhevsky_dead_fraction')} (11x11/4) against "
            f"{n.pct('zf_dead_fraction')} (7x7/2)"
        ),
    ),
    (
        "07_occlusion",
        "Fig. 7: the model localises the object",
        lambda n: (
            "occlusion minimum of p(correct) inside the object box in "
            f"{n.pct('pointing_game_hit_rate', 1)} "
            f"of {n.f('pointing_game_images', 'd')} test images (chance "
            f"{n.pct('pointing_game_chance_level', 1)}; the "
            f"untrained network {n.pct('pointing_game_hit_rate_untrained', 1)})"
        ),
    ),
    (
        "08_correspondence",
        "Table 1: parts correspond at layer 5",
        lambda n: (
            "Hamming consistency, standard deviations below random (positive: the parts "
            "correspond), "
            + "; ".join(
                f"layer {l}: left eye {n.f(f'layer{l}_left_eye{_SD}', '+.2f')}, right eye "
                f"{n.f(f'layer{l}_right_eye{_SD}', '+.2f')}, nose "
                f"{n.f(f'layer{l}_nose{_SD}', '+.2f')}"
                for l in (5, 7)
            )
        ),
    ),
    (
        "09_ablations",
        "Table 2: the 7x7/2 model beats Krizhevsky's layout",
        lambda n: (
            f"validation top-1 error {n.f('zf_val_top1_error', '.2f')} ± "
            f"{n.f('zf_val_top1_error_sd', '.2f')} % "
            f"against {n.f('krizhevsky_val_top1_error', '.2f')} ± "
            f"{n.f('krizhevsky_val_top1_error_sd', '.2f')} % "
            f"(mean ± sd over {n.f('zf_seeds', 'd')} and {n.f('krizhevsky_seeds', 'd')} seeds, "
            "the complete "
            f"{n.f('schedule_epochs', 'g')}-epoch schedule; the main model: "
            f"{n.f('main_val_top1_error', '.2f', unit=' %')})"
        ),
    ),
    (
        "09_ablations",
        "Table 3: removing layers 6-7 or 3-4 costs little, both a lot",
        lambda n: (
            _NOT_RECORDED
            if n.get("no_layers6_7_seeds") is None
            else f"validation top-1 error minus the full network's: without layers 6-7 "
            f"{n.f('cost_removing_layers6_7', '+.2f')}, without 3-4 "
            f"{n.f('cost_removing_layers3_4', '+.2f')}, "
            f"without both {n.f('cost_removing_both', '+.2f')} points"
        ),
    ),
    (
        "09_ablations",
        "Table 3: fc size makes little difference; wider middle conv layers help",
        lambda n: (
            _NOT_RECORDED
            if n.get("fc6_7_2048_seeds") is None
            else f"validation top-1 error: Fig. 3 {n.f('zf_val_top1_error', '.2f', unit=' %')}, "
            "fc 2048 "
            f"{n.f('fc6_7_2048_val_top1_error', '.2f', unit=' %')}, fc 8192 "
            f"{n.f('fc6_7_8192_val_top1_error', '.2f', unit=' %')}, wide conv 3-5 "
            f"{n.f('conv3_4_5_wide_val_top1_error', '.2f', unit=' %')}"
        ),
    ),
    (
        "10_transfer",
        "Tables 4-5, Fig. 9: pretrained features beat training from scratch with few images",
        _transfer,
    ),
    (
        "11_feature_analysis",
        "Table 7: deeper layers give better features",
        lambda n: (
            "linear SVM, layers 1-7: "
            f"{n.seq(_layers('svm_accuracy_pct_', '', range(1, 8)), '.1f')} % "
            f"(best: {n.get('svm_best_layer') or MISSING}; "
            f"{n.word('svm_monotone_with_depth', 'monotone', 'not monotone')})"
        ),
    ),
    (
        "12_explorer",
        "the explorer redraws in < 0.5 s",
        lambda n: (
            f"redraw p95 {n.f('explorer_redraw_p95_s', '.2f', unit=' s')} (median "
            f"{n.f('explorer_redraw_median_s', '.2f', unit=' s')}) over "
            f"{n.f('explorer_tour_actions', 'd')} actions"
        ),
    ),
    (
        "13_sanity_checks",
        "Adebayo et al. (2018): the deconvnet under model randomisation",
        lambda n: (
            "rank correlation with the trained model's map after re-initialising the layers down "
            "to "
            f"layer 6: guided backprop {n.f('guided_spearman_abs_randomized_to_layer6')}, gradient "
            f"{n.f('gradient_spearman_abs_randomized_to_layer6')}, deconvnet "
            f"{n.f('deconvnet_spearman_abs_randomized_to_layer6')} (different images: "
            f"{n.f('deconvnet_spearman_abs_different_images')})"
        ),
    ),
]


def _recipe_table(n: Numbers) -> str:
    """Notebook 04's recipe comparison as a markdown table (one row per recipe it recorded)."""
    names = sorted(
        {
            k[len("recipe_") : -len("_val_top1_error_pct")]
            for k in n.data
            if k.startswith("recipe_") and k.endswith("_val_top1_error_pct")
        }
    )
    if not names:
        n.missing.append("recipe_<name>_val_top1_error_pct")
        return MISSING
    chosen = n.data.get("profile_recipe")
    head = (
        "| recipe | val top-1 error | layer-1 power below 1/4 cycle/px | dead maps, layers 1-7 | "
        "minutes |\n"
        "| --- | --- | --- | --- | --- |"
    )
    rows = [
        f"| `{r}`{' (chosen)' if r == chosen else ''} | "
        f"{n.f(f'recipe_{r}_val_top1_error_pct', '.1f', unit=' %')} "
        f"| {n.pct(f'recipe_{r}_layer1_low_frequency_share')} "
        f"| {n.seq([f'recipe_{r}_dead_layer{i}' for i in range(1, 8)], '.0f', ' / ', scale=100)} % "
        f"| {n.f(f'recipe_{r}_train_minutes', '.1f')} |"
        for r in names
    ]
    epochs = n.calc(
        lambda e: max(1, round(e / 2)), ["epochs"], "d"
    )  # the screening budget, half the schedule
    return "\n".join([head] + rows) + (
        f"\n\n(after {epochs} epochs each; minutes measured when each was trained, "
        f"on a shared machine)"
    )


#: Numbers in the README's prose, outside the block: ``name: (notebook, text(nums))``.
VALUES: dict[str, tuple[str, Callable[[Numbers], str]]] = {
    "test_accuracy": (
        "00_quickstart",
        lambda n: n.calc(lambda e: 100 - e, ["test_top1_error"], ".1f", " %"),
    ),
    "chance_accuracy": (
        "00_quickstart",
        lambda n: n.calc(lambda e: 100 - e, ["chance_top1_error"], ".0f", " %"),
    ),
    "training_epochs": ("04_training_evolution", lambda n: n.f("epochs", "d")),
    "dead_maps": (
        "03_feature_visualization",
        lambda n: (
            n.seq([f"dead_map_share_layer{i}" for i in range(1, 8)], ".0f", ", ", scale=100) + " %"
        ),
    ),
    "recipe_table": ("04_training_evolution", _recipe_table),
    "training_minutes": (
        "04_training_evolution",
        lambda n: n.f("training_seconds", ".1f", scale=1 / 60, unit=" min"),
    ),
    "training_minutes_with_validation": (
        "04_training_evolution",
        lambda n: n.calc(
            lambda t, v: (t + v) / 60, ["training_seconds", "validation_seconds"], ".1f", " min"
        ),
    ),
    "layer1_low_frequency": (
        "04_training_evolution",
        lambda n: n.pct("layer1_low_frequency_share"),
    ),
    "comparison_epochs": ("09_ablations", lambda n: n.f("schedule_epochs", "g")),
    "comparison_network_minutes": (
        "09_ablations",
        lambda n: n.f("zf_train_minutes", ".0f", unit=" min"),
    ),
    "lr_drop_epoch": (
        "04_training_evolution",
        lambda n: ", ".join(str(e) for e in n.get("lr_drop_epochs") or []) or MISSING,
    ),
    "final_val_accuracy": (
        "04_training_evolution",
        lambda n: n.f("final_val_accuracy", ".1f", unit=" %"),
    ),
}


def load_numbers(figures: "str | Path") -> dict[str, dict]:
    """``{notebook: its JSON}`` for every ``<notebook>.json`` in ``figures``, in notebook order."""
    folder = Path(figures)
    if not folder.is_dir():
        raise ReportError(
            f"{folder} is not a folder of notebook numbers; run the notebooks first "
            f"(make figures) or pass --figures"
        )
    out = {}
    for p in sorted(folder.glob("*.json")):
        try:
            out[p.stem] = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ReportError(f"{p} is not valid JSON ({e}); rerun its notebook") from None
    return out


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _verdict_rows(numbers: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows = []
    for nb, data in numbers.items():
        for key in sorted(k for k in data if k.startswith("verdict_")):
            claim = key[len("verdict_") :]
            word = data[key]
            n = Numbers(nb, data)
            ci = (
                f"{n.f(f'{claim}_effect', '+.3g')} [{n.f(f'{claim}_ci_low', '+.3g')}, "
                f"{n.f(f'{claim}_ci_high', '+.3g')}]"
            )
            shown = word if word in VERDICTS else f"{word!r} (not one of {', '.join(VERDICTS)})"
            rows.append(
                f"| `{claim}` (`{nb[:2]}`) | {ci} | {_cell(shown)} | "
                f"{_cell(data.get(f'{claim}_uncertainty') or MISSING)} |"
            )
    return rows


def _commits(numbers: Mapping[str, Mapping[str, Any]]) -> str:
    seen: dict[str, list[str]] = {}
    for nb, data in numbers.items():
        prov = data.get("provenance") or {}
        c = prov.get("commit") or "not recorded"
        c = (
            c
            if c in ("unknown", "not recorded")
            else c[:12] + ("-dirty" if c.endswith("-dirty") else "")
        )
        seen.setdefault(c, []).append(f"`{nb[:2]}`")
    return "; ".join(f"{c} ({', '.join(nbs)})" for c, nbs in seen.items())


def render_block(numbers: Mapping[str, Mapping[str, Any]], profile: str) -> tuple[str, list[str]]:
    """The README's results block (Markdown) and the notes on keys it could not find."""
    notes: list[str] = []
    lines = ["| paper claim | measured here | notebook |", "| --- | --- | --- |"]
    for nb, claim, measured in HEADLINES:
        if nb not in numbers:
            notes.append(f"{nb}.json is missing: its rows are left out")
            continue
        n = Numbers(nb, numbers[nb])
        lines.append(f"| {_cell(claim)} | {_cell(measured(n))} | `{nb[:2]}` |")
        notes += [f"{nb}.json has no {k!r} (shown as {MISSING})" for k in dict.fromkeys(n.missing)]
    verdicts = _verdict_rows(numbers)
    lines += [
        "",
        "Each claim's verdict: the effect (model minus control, positive when the paper is "
        "right), its 95 % interval, and held / did not hold / within noise "
        "(`zfcore/paper/verdicts.py`):",
        "",
    ]
    if verdicts:
        lines += [
            "| claim (notebook) | effect [95 % interval] | verdict | uncertainty from |",
            "| --- | --- | --- | --- |",
            *verdicts,
        ]
    else:
        lines.append("(no notebook has recorded a `verdict_<claim>` yet)")
        notes.append("no verdict_* key in any JSON")
    lines += [
        "",
        f"Generated by `python -m zfcore.paper.readme readme` from `figures/{profile}/*.json`; "
        f"commits: {_commits(numbers)}.",
    ]
    return "\n".join(lines), list(dict.fromkeys(notes))


def render_paper_map(text: str) -> str:
    """``text`` with the block between :data:`MAP_BEGIN` and :data:`MAP_END` (when it has one)
    replaced by :func:`zfcore.paper.items_table`, the one notebook-to-paper map."""
    if MAP_BEGIN not in text:
        return text
    head, rest = text.split(MAP_BEGIN, 1)
    if MAP_END not in rest:
        raise ReportError(f"'{MAP_BEGIN}' without '{MAP_END}': close the paper map's block")
    _, tail = rest.split(MAP_END, 1)
    return f"{head}{MAP_BEGIN}\n{items_table()}\n{MAP_END}{tail}"


def render_readme(
    text: str,
    numbers: Mapping[str, Mapping[str, Any]],
    profile: str = "mini",
    source: str = "README.md",
) -> tuple[str, list[str]]:
    """``text`` with its results block and its ``<!-- value:NAME -->`` values regenerated."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ReportError(
            f"{source} needs exactly one '{BEGIN}' followed by one '{END}' around the "
            f"generated results table; add them where the table goes"
        )
    block, notes = render_block(numbers, profile)
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    text = f"{head}{BEGIN}\n{block}\n{END}{tail}"

    def value(m: re.Match) -> str:
        name = m.group(1)
        if name not in VALUES:
            raise ReportError(
                f"{source}: unknown generated value {name!r}; known: {sorted(VALUES)}"
            )
        nb, fn = VALUES[name]
        if nb not in numbers:
            notes.append(f"{nb}.json is missing: value {name!r} shows {MISSING}")
            shown = MISSING
        else:
            n = Numbers(nb, numbers[nb])
            shown = fn(n)
            notes.extend(
                f"{nb}.json has no {k!r} (value {name!r} shows {MISSING})" for k in n.missing
            )
        return f"<!-- value:{name} -->{shown}<!-- /value -->"

    return render_paper_map(VALUE_RE.sub(value, text)), notes


def check_readme(
    text: str,
    numbers: Mapping[str, Mapping[str, Any]],
    profile: str = "mini",
    source: str = "README.md",
) -> list[str]:
    """The lines where ``text`` differs from what :func:`render_readme` makes of ``numbers``
    (a unified diff, empty when they agree)."""
    want, _ = render_readme(text, numbers, profile, source)
    return list(
        difflib.unified_diff(
            text.splitlines(),
            want.splitlines(),
            f"{source} (committed)",
            f"{source} (from the JSON)",
            n=0,
            lineterm="",
        )
    )


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m zfcore.paper.readme",
        description="Generate (readme) or verify (check) the README's results from "
        "figures/<profile>/*.json.",
    )
    ap.add_argument("command", choices=["readme", "check"])
    ap.add_argument("--profile", default="mini")
    here = checkout_root() or Path.cwd()
    ap.add_argument("--readme", type=Path, default=here / "README.md")
    ap.add_argument(
        "--contributing",
        type=Path,
        default=here / "CONTRIBUTING.md",
        help="a second file whose paper map is kept in step (skipped when it does not exist)",
    )
    ap.add_argument(
        "--figures",
        type=Path,
        default=None,
        help="folder of <notebook>.json (default: figures/<profile> of the checkout, "
        "else of the working directory)",
    )
    args = ap.parse_args(argv)
    figures = args.figures or here / "figures" / args.profile
    try:
        if not args.readme.is_file():
            raise ReportError(f"{args.readme} does not exist; pass --readme PATH")
        text = args.readme.read_text()
        numbers = load_numbers(figures)
        if args.command == "readme":
            new, notes = render_readme(text, numbers, args.profile, str(args.readme))
            for note in notes:
                print(f"note: {note}")
            if new != text:
                atomic_write_text(args.readme, new)
                print(f"{args.readme}: results regenerated from {figures}")
            else:
                print(f"{args.readme}: already matches {figures}")
            if args.contributing.is_file():
                old = args.contributing.read_text()
                if render_paper_map(old) != old:
                    atomic_write_text(args.contributing, render_paper_map(old))
                    print(f"{args.contributing}: paper map regenerated")
            return 0
        diff = check_readme(text, numbers, args.profile, str(args.readme))
        if args.contributing.is_file():
            old = args.contributing.read_text()
            diff += list(
                difflib.unified_diff(
                    old.splitlines(),
                    render_paper_map(old).splitlines(),
                    f"{args.contributing} (committed)",
                    f"{args.contributing} (from zfcore.paper.ITEMS)",
                    n=0,
                    lineterm="",
                )
            )
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if diff:
        print(f"{args.readme} disagrees with {figures}/*.json:")
        print("\n".join(diff))
        rest = [a for a in (sys.argv[1:] if argv is None else argv) if a != "check"]
        print(
            "fix: run "
            f"`{' '.join(['python -m zfcore.paper.readme readme', *map(shlex.quote, rest)])}` "
            f"(then commit {args.readme.name})"
        )
        return 1
    print(f"{args.readme} agrees with {figures}/*.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
