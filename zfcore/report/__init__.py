"""What a notebook leaves on disk: its figures, the numbers it measured, and where they came from.

Each notebook saves ``figures/<profile>/<notebook>_<name>.png`` and one
``figures/<profile>/<notebook>.json`` of flat keys that say what they are (for example
``pointing_game_hit_rate``), so a reader, a test or a lab's CI can check a claim without opening
the notebook. Every JSON carries a ``provenance`` object (:meth:`Report.provenance`): the git
commit, the zfcore version, the profile and a hash of its identity, the fingerprints of the
models the notebook used, the date and the wall time. Writes are atomic (:mod:`zfcore.cache`).

The README's results are generated from these files (:mod:`zfcore.paper.readme`).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..cache import atomic_savefig, atomic_write_json, atomic_write_text, config_hash
from ..errors import ZFCoreError
from ..locations import figures_output_dir, writable_dir
from ..models import model_fingerprint
from ..profiles import Profile, get_profile, repo_root
from ..study import plain

__all__ = [
    "Report",
    "ReportError",
    "provenance",
    "git_commit",
    "profile_hash",
    "run_fingerprint",
]


class ReportError(ZFCoreError, ValueError):
    """A reserved key, a model that cannot be fingerprinted, or a README without its results
    markers (:mod:`zfcore.paper.readme`)."""


# ---------------------------------------------------------------------------------------------
# Provenance: which code, profile and models produced a notebook's numbers
# ---------------------------------------------------------------------------------------------

#: Paths whose changes do not make the tree "dirty" for provenance: they are what notebooks write
#: (regenerating figures/mini changes figures/ between one notebook's save and the next).
OUTPUT_PATHS = ("figures",)


def git_commit(root: "str | Path | None" = None) -> str:
    """The checkout's commit hash, with ``-dirty`` when tracked files outside :data:`OUTPUT_PATHS`
    have uncommitted changes; ``"unknown"`` when ``root`` is not the top of a git checkout (an
    installed package, a tarball) or git is missing."""
    root = Path(root or repo_root()).resolve()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        # a package installed into a virtual environment inside some other checkout is not it
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return "unknown"
        commit = git("rev-parse", "HEAD")
        changes = git(
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            *(f":(exclude){p}" for p in OUTPUT_PATHS),
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if changes else "") if commit else "unknown"


def profile_hash(profile: "str | Profile") -> str:
    """Hash of the profile's identity (the fields that define trained artefacts, no paths)."""
    return config_hash(get_profile(profile).identity())


def _zfcore_version() -> str:
    from .. import __version__

    return __version__


def run_fingerprint(model: Any) -> str:
    """:func:`zfcore.models.model_fingerprint` of a module, or of a finished training run's final
    network (anything with ``.model()``, e.g. :class:`zfcore.train.TrainRun`); a string is taken
    as a fingerprint already computed."""
    if isinstance(model, str):
        if not model:
            raise ReportError("a model fingerprint must be a non-empty string")
        return model
    if not hasattr(model, "state_dict") and callable(getattr(model, "model", None)):
        model = model.model()
    if not hasattr(model, "state_dict"):
        raise ReportError(
            f"cannot fingerprint {type(model).__name__}: pass an nn.Module, a training "
            f"run (zfcore.train.training_run(...)) or a fingerprint string"
        )
    return model_fingerprint(model)


def provenance(
    profile: "str | Profile",
    models: "Mapping[str, Any] | None" = None,
    wall_time_s: "float | None" = None,
) -> dict:
    """Where a set of numbers comes from: ``commit`` (git hash, ``-dirty`` with uncommitted
    changes, ``unknown`` outside a checkout), ``zfcore_version``, ``profile``, ``profile_hash``
    (:func:`profile_hash`), ``models`` (name: fingerprint, :func:`run_fingerprint`), ``date``
    (UTC, ISO 8601) and ``wall_time_s``. Every notebook's JSON and ``explain``'s numbers carry
    it."""
    P = get_profile(profile)
    return {
        "commit": git_commit(),
        "zfcore_version": _zfcore_version(),
        "profile": P.name,
        "profile_hash": profile_hash(P),
        "models": {k: run_fingerprint(v) for k, v in (models or {}).items()},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": None if wall_time_s is None else round(wall_time_s, 3),
    }


class Report:
    """Collects one notebook's figures and numbers under ``figures/<profile>/`` when the runner
    (or the reader) asks for the figures of record, else under ``build/figures/<profile>/``
    (:func:`zfcore.locations.figures_output_dir`; ``rep.dir`` says which).

    >>> rep = Report("07_occlusion", "tiny")            # doctest: +SKIP
    >>> rep.savefig(fig, "panels")                       # figures/tiny/07_occlusion_panels.png
    >>> rep.record(pointing_game_hit_rate=0.9)           # written by rep.save()
    >>> rep.uses_model("zf", model)                      # its fingerprint goes into the provenance
    """

    def __init__(self, notebook: str, profile: "str | Profile"):
        self.notebook = notebook
        self.profile = get_profile(profile)
        self.dir = figures_output_dir(self.profile)
        self.numbers: dict[str, Any] = {"profile": self.profile.name}
        self.figures: list[str] = []
        self.models: dict[str, str] = {}
        self._started = time.perf_counter()

    def path(self, name: str, suffix: str = ".png") -> Path:
        return self.dir / f"{self.notebook}_{name}{suffix}"

    def _target(self, filename: str) -> Path:
        """``self.dir / filename``, the folder created and checked writable (a read-only one
        names the variable that moves it)."""
        env = "ZFCORE_FIGURES" if self.dir == self.profile.figures_dir else "ZFCORE_BUILD"
        return writable_dir(self.dir, env) / filename

    def savefig(self, fig, name: str, **kwargs) -> Path:
        """Save ``fig`` as ``<notebook>_<name>.png`` (atomically) and return the path."""
        p = atomic_savefig(fig, self._target(self.path(name).name), **kwargs)
        if name not in self.figures:
            self.figures.append(name)
        return p

    def record(self, **numbers: Any) -> dict:
        """Remember flat, self-describing numbers; returns them (so a notebook can display them)."""
        reserved = {"provenance", "figures"} & set(numbers)
        if reserved:
            raise ReportError(
                f"{sorted(reserved)} are written by Report.save(); record the number "
                f"under another name"
            )
        out = {k: plain(v) for k, v in numbers.items()}
        self.numbers.update(out)
        return out

    def uses_model(self, name: str, model: Any) -> str:
        """Register a model the numbers come from (``model``: an ``nn.Module``, a training run or a
        fingerprint string); its :func:`zfcore.models.model_fingerprint` goes into the JSON's
        provenance under ``name``. Returns the fingerprint."""
        if not isinstance(name, str) or not name:
            raise ReportError(f"a model's name must be a non-empty string, not {name!r}")
        self.models[name] = run_fingerprint(model)
        return self.models[name]

    def uses_models(self, models: "Mapping[str, Any] | None" = None, **more: Any) -> dict[str, str]:
        """:meth:`uses_model` for each ``name: model`` (a mapping and/or keywords)."""
        for name, m in {**dict(models or {}), **more}.items():
            self.uses_model(name, m)
        return dict(self.models)

    def provenance(self) -> dict:
        """Where the numbers come from (:func:`provenance`), the wall time counted from the
        Report's creation."""
        return provenance(self.profile, self.models, time.perf_counter() - self._started)

    def table(self, rows: Iterable[Mapping[str, Any]], name: str) -> Path:
        """Write ``rows`` (dicts with the same keys) as ``<notebook>_<name>.csv``."""
        rows = [{k: plain(v) for k, v in r.items()} for r in rows]
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return atomic_write_text(self._target(self.path(name, ".csv").name), buf.getvalue())

    def save(self) -> Path:
        """Write ``<notebook>.json``: every recorded number, the list of figures and the
        :meth:`provenance`."""
        data = dict(self.numbers)
        data["figures"] = [self.path(n).name for n in self.figures]
        data["provenance"] = self.provenance()
        return atomic_write_json(self._target(f"{self.notebook}.json"), data)

    def load(self) -> dict:
        p = self.dir / f"{self.notebook}.json"
        return json.loads(p.read_text()) if p.is_file() else {}
