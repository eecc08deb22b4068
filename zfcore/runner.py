"""Run the notebooks: all of them, or a chosen subset, on any profile.

    python -m zfcore.runner --profile mini                 # every notebook, in paper order
    python -m zfcore.runner --profile tiny 02 07_occlusion # a subset, by number or name

Executed copies go to ``build/notebooks/<profile>/`` (the notebooks in ``notebooks/`` stay
without outputs); figures and numbers go to ``figures/<profile>/``: the runner is what writes the
figures of record (it sets ``ZFCORE_SAVE_FIGURES=1`` for the notebooks it executes; a notebook
opened in JupyterLab or served by Voila writes to ``build/figures/<profile>/``, see
:mod:`zfcore.locations`). Before the first notebook it says where the trained network comes from
(this machine's cache, the shipped weights, or training). The run stops at the first failure and
names the notebook and the cell. This is the command labs and course sites put in their CI.

Outside a checkout (an installed zfcore) the notebooks are read from ``./notebooks`` and
everything is written under :func:`zfcore.locations.build_root` and ``./figures``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import ZFCoreError
from .locations import SAVE_FIGURES_ENV, build_root, checkout_root
from .profiles import PROFILES, get_profile
from .train import weights_source

__all__ = [
    "list_notebooks",
    "run_notebook",
    "run_all",
    "promised_figures",
    "NotebookFailed",
    "ExtraMissing",
    "import_extra",
]


class NotebookFailed(ZFCoreError, RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


class NoSuchNotebook(ZFCoreError, ValueError):
    """A notebook selection (number or name) that matches no notebook."""


class ExtraMissing(ZFCoreError, ImportError):
    """A package of the ``notebooks`` extra (papermill, nbformat, nbconvert) is not installed."""


def import_extra(module: str):
    """``import module``, or :class:`ExtraMissing` naming the pip line that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExtraMissing(
            f"{module} is not installed: the notebook tools are the notebooks extra, "
            f'pip install "zfcore[notebooks]"'
        ) from None


def notebooks_dir() -> Path:
    """The checkout's ``notebooks/``, else ``./notebooks`` under the working directory."""
    return (checkout_root() or Path.cwd()) / "notebooks"


def build_dir(profile: str) -> Path:
    return build_root() / "notebooks" / profile


@contextmanager
def _environment(**values: str):
    """``os.environ`` with ``values`` set for the block (papermill's kernels inherit it)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def list_notebooks(select: "list[str] | None" = None) -> list[Path]:
    """Notebooks in paper order; ``select`` entries match a number prefix or a name."""
    paths = sorted(p for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if not select:
        return paths
    chosen = []
    for s in select:
        s = Path(s).stem
        hits = [
            p for p in paths if p.stem == s or p.stem.split("_")[0] == s or p.stem.startswith(s)
        ]
        if not hits:
            raise NoSuchNotebook(
                f"no notebook matches {s!r}; notebooks: {', '.join(p.stem for p in paths)}"
            )
        chosen += [h for h in hits if h not in chosen]
    return chosen


def promised_figures(path: Path) -> list[str]:
    """The figure names a notebook declares in its metadata (``metadata.zfcore.figures``)."""
    meta = json.loads(Path(path).read_text()).get("metadata", {})
    return list(meta.get("zfcore", {}).get("figures", []))


@dataclass
class RunResult:
    notebook: str
    seconds: float
    output: Path


#: Seconds one cell may run before the runner gives up, per profile (``None``: no limit). The
#: ``tiny`` notebooks run in seconds, so a hung cell fails the tests fast; a ``mini`` cell may
#: train networks for hours on a loaded CPU, and a limit there only throws that work away.
CELL_TIMEOUT: dict[str, "int | None"] = {"tiny": 600}


def run_notebook(
    path: Path, profile: str, parameters: dict | None = None, timeout: "int | None" = -1
) -> RunResult:
    """Execute one notebook with papermill; raise :class:`NotebookFailed` naming the cell.
    ``timeout``: seconds per cell, ``None`` for no limit; by default the profile's
    :data:`CELL_TIMEOUT`."""
    pm = import_extra("papermill")
    from papermill.exceptions import PapermillExecutionError

    P = get_profile(profile)  # a bad profile fails here, before a kernel starts
    if timeout == -1:
        timeout = CELL_TIMEOUT.get(P.name)
    out = build_dir(profile) / Path(path).name
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {"profile": profile, **(parameters or {})}
    t0 = time.perf_counter()
    try:
        with _environment(**{SAVE_FIGURES_ENV: "1"}):  # the figures of record
            pm.execute_notebook(
                str(path),
                str(out),
                parameters=params,
                kernel_name="python3",
                cwd=str(Path(path).parent),
                progress_bar=False,
                execution_timeout=timeout,
                log_output=False,
                iopub_timeout=120,
            )  # a busy machine can delay a cell's output
    except PapermillExecutionError as e:
        raise NotebookFailed(
            f"{Path(path).name} failed in cell {e.exec_count} "
            f"({e.ename}: {e.evalue}); executed copy: {out}"
        ) from None
    return RunResult(Path(path).stem, time.perf_counter() - t0, out)


def run_all(
    profile: str,
    select: "list[str] | None" = None,
    parameters: "dict | None" = None,
    timeout: "int | None" = -1,
) -> list[RunResult]:
    """Execute the ``select``-ed notebooks (all by default) in order; ``parameters`` go to every
    one of them (papermill ignores names a notebook does not declare)."""
    from tqdm.auto import tqdm

    results = []
    paths = list_notebooks(select)
    bar = tqdm(paths, desc=f"notebooks ({profile})", unit="nb")
    for p in bar:
        bar.set_postfix_str(p.stem)
        results.append(run_notebook(p, profile, parameters, timeout))
    return results


def network_source(profile) -> str:
    """One line: where the notebooks' trained network comes from on ``profile`` (a name or a
    :class:`~zfcore.profiles.Profile`): this machine's cache, the shipped weights, or training."""
    P = get_profile(profile)
    if P.name == "imagenet":
        return "imagenet: the pretrained networks (zfcore.zoo), no training"

    return f"{P.name}: the trained network: {weights_source(P)[1]}"


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m zfcore.runner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("notebooks", nargs="*", help="numbers or names; default: all")
    ap.add_argument("--profile", default="mini", choices=list(PROFILES))
    ap.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a notebook parameter, VALUE read as JSON when it parses (e.g. -p seeds=3 "
        "-p train_missing=false), else as a string; repeatable",
    )
    ap.add_argument(
        "--cell-timeout",
        type=int,
        default=-1,
        help="seconds one cell may run (0: no limit; default: 600 on tiny, no limit otherwise)",
    )
    args = ap.parse_args(argv)
    params = {}
    for item in args.parameter:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            ap.error(f"-p takes NAME=VALUE with a Python name, not {item!r}")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    timeout = None if args.cell_timeout == 0 else args.cell_timeout
    print(network_source(args.profile), flush=True)
    try:
        results = run_all(args.profile, args.notebooks, params, timeout)
    except NoSuchNotebook as e:
        ap.error(str(e))
    except NotebookFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    for r in results:
        print(f"{r.notebook:32s} {r.seconds:7.1f} s  -> {r.output}")
    print(f"figures in {get_profile(args.profile).figures_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
