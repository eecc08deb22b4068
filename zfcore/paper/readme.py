"""The README's results, generated from ``figures/<profile>/*.json``, never typed by hand.

Each paper module's ``HEADLINES`` says, for its notebook, which paper claim a line of the README
reports and how its numbers read (a key the notebook no longer writes shows as ``n/a``); the
verdicts come from the notebooks' ``verdict_<claim>`` keys. The README's benchmark table comes
the same way from ``figures/benchmarks/<name>.json``, which
``python -m benchmarks.<name> --save figures/benchmarks`` writes (``make bench`` runs them all)::

    python -m zfcore.paper.readme readme  # rewrite README.md's results, values and paper map
    python -m zfcore.paper.readme check   # exit 1, naming the lines, where README and JSON differ
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from ..cache import atomic_write_text
from ..locations import checkout_root
from ..report import ReportError
from . import ITEMS, items_table
from .fig4_evolution import RECIPES
from .headline import MISSING, Numbers
from .verdicts import VERDICTS

__all__ = [
    "render_paper_map",
    "Numbers",
    "HEADLINES",
    "VALUES",
    "TOTALS",
    "make_figures_minutes",
    "load_numbers",
    "load_benchmarks",
    "render_block",
    "render_benchmarks",
    "render_readme",
    "check_readme",
    "main",
]


# ---------------------------------------------------------------------------------------------
# The README's results, generated from figures/<profile>/*.json
# ---------------------------------------------------------------------------------------------


def _module(item):
    return importlib.import_module(f"{__package__}.{item.module}")


BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
#: The generated notebook-to-paper table (README.md and CONTRIBUTING.md).
MAP_BEGIN, MAP_END = "<!-- paper-map:begin -->", "<!-- paper-map:end -->"
#: An inline generated value in the README's prose: ``<!-- value:NAME -->text<!-- /value -->``.
VALUE_RE = re.compile(r"<!-- value:([A-Za-z0-9_]+) -->(.*?)<!-- /value -->", re.DOTALL)


#: The README's headline numbers: ``(notebook, paper claim, measured(nums) -> text)``, in paper
#: order, from each paper module's ``HEADLINES``. A key a notebook no longer writes shows as
#: ``n/a`` (``readme`` lists them); the verdicts come from the notebooks' ``verdict_<claim>``
#: keys, in the table after this one.
HEADLINES: list[tuple[str, str, Callable[[Numbers], str]]] = [
    (it.notebook, claim, measured)
    for it in ITEMS
    for claim, measured in getattr(_module(it), "HEADLINES", [])
]

#: Numbers in the README's prose, outside the block: ``name: (notebook, text(nums))``, from each
#: paper module's ``README_VALUES``.
VALUES: dict[str, tuple[str, Callable[[Numbers], str]]] = {
    name: (it.notebook, text)
    for it in ITEMS
    for name, text in getattr(_module(it), "README_VALUES", {}).items()
}


def make_figures_minutes(numbers: Mapping[str, Mapping[str, Any]]) -> "dict[str, float] | None":
    """What ``make figures`` costs from an empty cache, in wall minutes on the machine that made
    the numbers, part by part: the main model's training (04's history, validation included),
    the recipe screening (every recipe at the chosen one's measured minutes), the rest of the
    comparison study on two workers side by side (09: its main-model trainings less the main
    model itself, at the Fig. 3 network's measured minutes per worker) and the notebooks' own
    computations as last run (their JSON's provenance ``wall_time_s``, with what they trained
    then). None when a part's numbers are missing."""
    fig4, study = numbers.get("04_training_evolution", {}), numbers.get("09_ablations", {})
    recipes = [v for k, v in fig4.items() if k.startswith("recipe_") and k.endswith("_minutes")]
    train, val = fig4.get("training_seconds"), fig4.get("validation_seconds")
    trainings, per_network = study.get("study_main_model_trainings"), study.get("zf_train_minutes")
    walls = {nb: (d.get("provenance") or {}).get("wall_time_s") for nb, d in numbers.items()}
    if not recipes or None in (train, val, trainings, per_network) or None in walls.values():
        return None
    parts = {
        "main_model": (train + val) / 60,
        "recipe_screening": len(RECIPES) * sum(recipes) / len(recipes),
        "comparison_study": (trainings - 1) * per_network / 2,
        "notebooks": sum(walls.values()) / 60,
    }
    slowest = max(walls, key=walls.get)
    return {
        **parts,
        "total": sum(parts.values()),
        "slowest": slowest,
        "slowest_minutes": walls[slowest] / 60,
    }


def _make_figures_text(numbers: Mapping[str, Mapping[str, Any]]) -> str:
    m = make_figures_minutes(numbers)
    if m is None:
        return MISSING

    def t(minutes: float) -> str:
        return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"

    return (
        f"about {t(m['total'])} here: the main model {t(m['main_model'])}, the recipe screening "
        f"{t(m['recipe_screening'])}, the rest of the comparison study {t(m['comparison_study'])} "
        f"on two workers side by side, and the notebooks' own computations "
        f"{t(m['notebooks'])} as last run (`{m['slowest'][:2]}` alone {t(m['slowest_minutes'])})"
    )


#: Numbers in the README's prose that read several notebooks' JSON: ``name: text(numbers)``.
TOTALS: dict[str, Callable[[Mapping[str, Mapping[str, Any]]], str]] = {
    "make_figures_time": _make_figures_text,
}


def load_numbers(figures: "str | Path") -> dict[str, dict]:
    """``{notebook: its JSON}`` for every ``<notebook>.json`` in ``figures``, in notebook order."""
    folder = Path(figures)
    if not folder.is_dir():
        raise ReportError(
            f"{folder} is not a folder of notebook numbers; run the notebooks first "
            f"(make figures) or pass --figures"
        )
    return _read_jsons(folder, "notebook")


def _read_jsons(folder: Path, made_by: str) -> dict[str, dict]:
    """``{stem: parsed JSON}`` for every ``*.json`` in ``folder``, sorted by name; a file that
    is not JSON names itself and what to rerun (its ``made_by``)."""
    out = {}
    for p in sorted(folder.glob("*.json")):
        try:
            out[p.stem] = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ReportError(f"{p} is not valid JSON ({e}); rerun its {made_by}") from None
    return out


def _short_commit(commit: "str | None") -> str:
    """A provenance commit as shown in the README: 12 hex digits, ``-dirty`` kept."""
    c = commit or "not recorded"
    return (
        c
        if c in ("unknown", "not recorded")
        else c[:12] + ("-dirty" if c.endswith("-dirty") else "")
    )


#: The generated benchmark table (README.md), from ``figures/benchmarks/<name>.json``.
BENCH_BEGIN, BENCH_END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"
#: The benchmark table's row order; a benchmark not listed follows, alphabetically.
BENCHMARK_ORDER = (
    "deconv",
    "occlusion",
    "mining",
    "features",
    "train",
    "study",
    "data",
    "explorer",
    "memory",
    "forward",
    "gpu",
)


def load_benchmarks(folder: "str | Path") -> dict[str, dict]:
    """``{benchmark: its saved run}`` for every ``<name>.json`` in ``folder`` (what
    ``python -m benchmarks.<name> --save folder`` writes), in :data:`BENCHMARK_ORDER`; an empty
    dict when the folder does not exist."""
    folder = Path(folder)
    out = _read_jsons(folder, "benchmark") if folder.is_dir() else {}
    rank = {name: i for i, name in enumerate(BENCHMARK_ORDER)}
    return dict(sorted(out.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _measured(prov: Mapping[str, Any]) -> str:
    """Where and when a benchmark ran: date, commit, CPUs, torch threads, 1-minute load."""
    commit = _short_commit(prov.get("commit"))
    load = [v for v in prov.get("load_average_1min") or [] if v is not None]
    # rounded first, then de-duplicated: a load of 3.02 then 2.98 reads "3.0", not "3.0-3.0"
    shown = "-".join(dict.fromkeys(f"{v:.1f}" for v in load)) if load else MISSING
    return (
        f"{str(prov.get('date') or MISSING)[:10]}, `{commit}`, {prov.get('cpus', MISSING)} CPUs "
        f"({prov.get('cpu', MISSING)}), {prov.get('torch_threads', MISSING)} torch thread(s), "
        f"load {shown}"
    )


def render_benchmarks(results: Mapping[str, Mapping[str, Any]]) -> tuple[str, list[str]]:
    """The README's benchmark table (Markdown) from :func:`load_benchmarks`, and notes on what
    a saved run lacks."""
    lines = [
        "| benchmark | result | target | measured (date, commit, CPUs, threads, load) |",
        "| --- | --- | --- | --- |",
    ]
    notes = []
    for name, run in results.items():
        for key in ("summary", "target", "provenance"):
            if key not in run:
                notes.append(f"benchmarks/{name}.json has no {key!r} (shown as {MISSING})")
        cells = [run.get("summary", MISSING), run.get("target", MISSING)]
        cells.append(_measured(run.get("provenance") or {}))
        lines.append(f"| `{name}` | " + " | ".join(map(_cell, cells)) + " |")
    if not results:
        lines.append("| (none saved yet) | `make bench` writes them | | |")
        notes.append("no saved benchmark run: the table is empty")
    return "\n".join(lines), notes


def _replace_block(text: str, begin: str, end: str, block: str, source: str, what: str) -> str:
    """``text`` with the part between ``begin`` and ``end`` replaced by ``block``."""
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ReportError(
            f"{source} needs exactly one '{begin}' followed by one '{end}' around the "
            f"generated {what}; add them where it goes"
        )
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{block}\n{end}{tail}"


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
        c = _short_commit((data.get("provenance") or {}).get("commit"))
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
    benchmarks: "Mapping[str, Mapping[str, Any]] | None" = None,
) -> tuple[str, list[str]]:
    """``text`` with its results block, its ``<!-- value:NAME -->`` values and (given
    ``benchmarks``, :func:`load_benchmarks`, and where ``text`` has the markers) its benchmark
    table regenerated."""
    block, notes = render_block(numbers, profile)
    text = _replace_block(text, BEGIN, END, block, source, "results table")
    if benchmarks is not None and (BENCH_BEGIN in text or BENCH_END in text):
        table, more = render_benchmarks(benchmarks)
        text = _replace_block(text, BENCH_BEGIN, BENCH_END, table, source, "benchmark table")
        notes += more

    def value(m: re.Match) -> str:
        name = m.group(1)
        if name in TOTALS:
            shown = TOTALS[name](numbers)
            if shown == MISSING:
                notes.append(f"value {name!r} shows {MISSING}: a notebook's numbers are missing")
            return f"<!-- value:{name} -->{shown}<!-- /value -->"
        if name not in VALUES:
            raise ReportError(
                f"{source}: unknown generated value {name!r}; known: {sorted({**VALUES, **TOTALS})}"
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
    benchmarks: "Mapping[str, Mapping[str, Any]] | None" = None,
) -> list[str]:
    """The lines where ``text`` differs from what :func:`render_readme` makes of ``numbers``
    (and ``benchmarks``) (a unified diff, empty when they agree)."""
    want, _ = render_readme(text, numbers, profile, source, benchmarks)
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
    ap.add_argument(
        "--benchmarks",
        type=Path,
        default=None,
        help="folder of saved benchmark runs, <name>.json (default: figures/benchmarks beside "
        "the profile's folder)",
    )
    args = ap.parse_args(argv)
    figures = args.figures or here / "figures" / args.profile
    bench_dir = args.benchmarks or figures.parent / "benchmarks"
    try:
        if not args.readme.is_file():
            raise ReportError(f"{args.readme} does not exist; pass --readme PATH")
        text = args.readme.read_text()
        numbers = load_numbers(figures)
        benchmarks = load_benchmarks(bench_dir)
        if args.command == "readme":
            new, notes = render_readme(text, numbers, args.profile, str(args.readme), benchmarks)
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
        diff = check_readme(text, numbers, args.profile, str(args.readme), benchmarks)
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
