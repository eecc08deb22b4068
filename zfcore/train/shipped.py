"""Trained networks that ship with the package: ``zfcore/weights/<name>.safetensors``.

Training ``mini`` on a laptop's CPU takes a course time it should not have to spend. The final
weights of a cached training run are exported, once, to a safetensors file whose metadata
records what they are (:func:`export`):

* ``profile``, ``arch``, ``variant``, ``epochs``;
* ``config_hash``: :func:`zfcore.cache.config_hash` of :meth:`TrainSpec.key_config` (everything
  the weights depend on but the run's length) and ``key_config`` itself (JSON), so a mismatch can
  name the fields that differ;
* ``fingerprint``: :func:`zfcore.models.model_fingerprint` of the network, the identity the
  figures' provenance records and every cache key of an analysis uses;
* ``torch``, ``zfcore``, the final validation error and the training minutes.

:func:`zfcore.train.trained_model` (and so :func:`zfcore.zoo.model_for_profile` and every
notebook that only needs the final network) takes this machine's cache first, then a shipped file
whose configuration hash and length match the run asked for (:func:`find`), and trains
otherwise. :func:`load` checks the fingerprint after loading. ``ZFCORE_RETRAIN=1`` ignores the
shipped files; ``python -m zfcore.train --retrain`` trains from scratch and says whether it
reproduced the shipped fingerprint::

    python -m zfcore.train --profile mini --export      # train (or take the cached run), then write
                                                        # zfcore/weights/mini.safetensors
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .. import __version__
from .. import cache as zcache
from ..errors import ZFCoreError
from ..locations import LocationError, checkout_root, package_dir
from ..models import load_model_state, model_fingerprint
from .network import build_model
from .spec import TrainSpec

__all__ = [
    "ShippedWeights",
    "ShippedError",
    "WEIGHTS_DIR",
    "RETRAIN_ENV",
    "weights_name",
    "read",
    "find",
    "load",
    "export",
    "retrain_requested",
    "differences",
]

#: Where the shipped files live: inside the package, so an installed zfcore has them too.
WEIGHTS_DIR = package_dir() / "weights"
#: Set to ``1`` to ignore the shipped weights (train here, or use this machine's cache).
RETRAIN_ENV = "ZFCORE_RETRAIN"
_FORMAT = "zfcore-trained-network/1"


class ShippedError(ZFCoreError, ValueError):
    """A shipped weight file that is unreadable, or whose network is not the one it records."""


def weights_name(spec: TrainSpec) -> str:
    """``<profile>`` for the profile's main network (ZF layout, full Table 3 variant), else
    ``<profile>_<arch>_<variant>``."""
    p = spec.profile.name
    return p if (spec.arch, spec.variant) == ("zfnet", "zf") else f"{p}_{spec.arch}_{spec.variant}"


def retrain_requested() -> bool:
    """Whether ``ZFCORE_RETRAIN=1`` asks to ignore the shipped weights."""
    return os.environ.get(RETRAIN_ENV, "").strip() == "1"


@dataclass(frozen=True)
class ShippedWeights:
    """One shipped file and its metadata (every value a string, as safetensors stores them)."""

    path: Path
    metadata: dict

    @property
    def fingerprint(self) -> str:
        return self.metadata["fingerprint"]

    @property
    def config_hash(self) -> str:
        return self.metadata["config_hash"]

    @property
    def epochs(self) -> int:
        return int(self.metadata["epochs"])

    def matches(self, spec: TrainSpec) -> bool:
        """Whether these are the final weights of the run ``spec`` asks for."""
        return (
            self.config_hash == zcache.config_hash(spec.key_config())
            and self.epochs == spec.profile.epochs
        )

    def describe(self) -> str:
        m = self.metadata
        return (
            f"{self.path.name} (fingerprint {self.fingerprint}, {m['profile']} "
            f"{m['arch']}/{m['variant']}, {m['epochs']} epochs, val top-1 error "
            f"{float(m['val_top1_error']):.2f} %, torch {m['torch']})"
        )


def read(path: "str | Path") -> ShippedWeights:
    """The metadata of a shipped file (the tensors are not read)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except (OSError, SafetensorError) as e:
        raise ShippedError(
            f"{path}: unreadable safetensors file ({e}); restore it from the "
            f"repository (git checkout -- {path.name}) or delete it to train"
        ) from None
    missing = [
        k for k in ("format", "fingerprint", "config_hash", "epochs", "profile") if k not in meta
    ]
    if missing or meta.get("format") != _FORMAT:
        raise ShippedError(
            f"{path}: not a zfcore weight file (metadata lacks {missing or ['format']}); "
            f"export one with python -m zfcore.train --profile NAME --export"
        )
    return ShippedWeights(path, meta)


def find(spec: TrainSpec, directory: "str | Path | None" = None) -> "ShippedWeights | None":
    """The shipped file with the final weights of ``spec``'s run, or ``None`` (no file, or one
    for another configuration or length)."""
    path = Path(directory or WEIGHTS_DIR) / f"{weights_name(spec)}.safetensors"
    if not path.is_file():
        return None
    shipped = read(path)
    return shipped if shipped.matches(spec) else None


def differences(shipped: ShippedWeights, spec: TrainSpec) -> list[str]:
    """The key-configuration fields (dotted) in which ``spec`` differs from the shipped run, and
    ``epochs`` when the lengths differ: why :func:`find` did not take it."""

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    ours = flat(json.loads(json.dumps(zcache.canonical(spec.key_config()))))
    theirs = flat(json.loads(shipped.metadata.get("key_config", "{}")))
    diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    return diff + (["epochs"] if shipped.epochs != spec.profile.epochs else [])


def load(shipped: ShippedWeights, spec: TrainSpec) -> nn.Module:
    """``spec``'s network with the shipped weights, in eval mode on the CPU; raises
    :class:`ShippedError` when the loaded network's fingerprint is not the recorded one."""
    model = build_model(spec)
    load_model_state(model, load_file(str(shipped.path)), str(shipped.path))
    got = model_fingerprint(model)
    if got != shipped.fingerprint:
        raise ShippedError(
            f"{shipped.path}: the loaded network's fingerprint is {got}, the file "
            f"records {shipped.fingerprint}: the file is damaged or the model code "
            f"changed; set {RETRAIN_ENV}=1 to train instead, or export it again"
        )
    model.weights_source = f"shipped weights {shipped.path.name}"
    return model.eval()


def export(run, directory: "str | Path | None" = None) -> ShippedWeights:
    """Write a finished :class:`TrainRun`'s final weights with their metadata to
    ``<directory>/<name>.safetensors`` (default: the package's ``weights/`` folder, in a checkout
    only) and return what was written."""
    if directory is None:
        if checkout_root() is None:
            raise LocationError(
                f"{WEIGHTS_DIR} belongs to an installed package: pass an output "
                f"folder (--export DIR) to export weights outside a checkout"
            )
        directory = WEIGHTS_DIR
    spec: TrainSpec = run.spec
    model = run.model()
    state = {k: t.detach().cpu().contiguous().clone() for k, t in model.state_dict().items()}
    final = run.final
    meta = {
        "format": _FORMAT,
        "profile": spec.profile.name,
        "arch": spec.arch,
        "variant": spec.variant,
        "epochs": str(spec.profile.epochs),
        "config_hash": zcache.config_hash(spec.key_config()),
        "key_config": json.dumps(zcache.canonical(spec.key_config()), sort_keys=True),
        "fingerprint": model_fingerprint(model),
        "torch": torch.__version__,
        "zfcore": __version__,
        "val_top1_error": repr(float(final.val_top1_error)),
        "train_minutes": f"{run.train_seconds / 60:.1f}",
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    out = Path(directory) / f"{weights_name(spec)}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=meta)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return read(out)
