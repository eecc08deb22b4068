"""How a benchmark reports: the ``RESULT <name> key=value ...`` line it ends with and, with
``--save DIR``, the same numbers in ``DIR/<name>.json`` beside the README's sentence on them, the
target, and where they were measured (commit, CPU, threads, how loaded the machine was).

The README's benchmark table is generated from ``figures/benchmarks/*.json`` by
``python -m zfcore.paper.readme readme``, never typed: ``make bench`` runs every benchmark with
``--save figures/benchmarks``. A ``--quick`` run is a smoke test and is never saved.

    args, record = parse(ap, argv, "data")   # adds --save, refuses --save with --quick
    ...                                      # measure
    record.finish({"images_per_s": f"{rate:.0f}", ...}, summary="...", target=">= 1x PNG")
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Mapping

import torch

from zfcore.cache import atomic_write_text
from zfcore.report import git_commit


def _value(text: str):
    """A RESULT value as JSON: a number where it reads as one, else the text."""
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text else number


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _load() -> "float | None":
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        return None


class Record:
    """One benchmark run: started at construction (time and load), ended by :meth:`finish`."""

    def __init__(self, name: str, save: "Path | None", argv: "list[str]"):
        self.name, self.save, self.argv = name, save, argv
        self.started = time.perf_counter()
        self.load_start = _load()
        self.commit = git_commit()  # the code that runs: read before a long run, not after

    def finish(
        self,
        fields: Mapping[str, str],
        *,
        summary: str,
        target: str,
        failure: "str | None" = None,
    ) -> dict:
        """Print ``RESULT <name> key=value ...`` (``fields``: values already formatted, no
        spaces) and, with ``--save DIR``, write ``DIR/<name>.json`` atomically. Returns what
        was (or would be) saved. ``failure`` (what went wrong, e.g. "2 steps failed") keeps a
        broken run out of the saved records: the line is still printed, nothing is written, and
        the reason is printed to stderr."""
        bad = [k for k, v in fields.items() if not str(v) or " " in str(v) or "=" in str(v)]
        if bad:
            raise ValueError(f"RESULT values must be non-empty and free of spaces and '=': {bad}")
        line = f"RESULT {self.name} " + " ".join(f"{k}={v}" for k, v in fields.items())
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        out = {
            "benchmark": self.name,
            "result": {k: _value(str(v)) for k, v in fields.items()},
            "line": line,
            "summary": summary,
            "target": target,
            "command": f"python -m benchmarks.{self.name} {shlex.join(self.argv)}".strip(),
            "provenance": {
                "commit": self.commit,
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "wall_time_s": round(time.perf_counter() - self.started, 1),
                "cpu": _cpu_model(),
                "cpus": len(cpus) if cpus else os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "load_average_1min": [self.load_start, _load()],
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
        }
        if self.save is not None and failure:
            print(f"not saved to {self.save}: {failure}; fix it and rerun", file=sys.stderr)
        elif self.save is not None:
            path = Path(self.save) / f"{self.name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(out, indent=1) + "\n")
            print(f"saved {path}")
        print(line, flush=True)
        return out


def parse(
    ap: argparse.ArgumentParser, argv: "list[str] | None", name: str
) -> tuple[argparse.Namespace, Record]:
    """``ap``'s arguments plus ``--save DIR``, and the run's :class:`Record`. ``--save`` with
    ``--quick`` is refused: a smoke run's numbers are not a measurement."""
    ap.add_argument(
        "--save",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write DIR/<name>.json (the numbers, the README's line, where they were "
        "measured); the README's table is generated from figures/benchmarks",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    if args.save is not None and getattr(args, "quick", False):
        ap.error("--save records a full run; drop --quick (a smoke run is not a measurement)")
    shown = [a for i, a in enumerate(argv) if a != "--save" and (i == 0 or argv[i - 1] != "--save")]
    shown = [a for a in shown if not a.startswith("--save=")]
    return args, Record(name, args.save, shown)
