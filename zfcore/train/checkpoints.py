"""A run's files on disk: the checkpoints of Fig. 4, the resume state, the history.

Fig. 4 shows features at epochs 1, 2, 5, 10, 20, 30, 40 and 64: a run keeps the weights at the
profile's ``checkpoint_epochs``, at fractions of the first epoch (``EARLY_CHECKPOINTS``) and at its
end. A resume file after every epoch makes training resumable bit for bit, and a checkpoint write
killed half-way leaves the previous checkpoint in use (every file is written atomically with a
checksum by :func:`zfcore.cache.save_tensors`).
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .. import cache as zcache
from ..models import load_model_state
from .metrics import EpochMetrics
from .network import build_model
from .spec import TrainError, TrainSpec


def _label(epoch: float) -> str:
    return f"{epoch:g}"


class CheckpointStore:
    """The files of one training run, all written with :func:`zfcore.cache.save_tensors`.

    * ``weights_e<epoch>.pt``: the model's ``state_dict`` at a checkpoint epoch (Fig. 4);
    * ``resume_e<epoch>.pt``: everything needed to continue (model, optimiser, annealing state,
      history), one file per epoch; the previous one is deleted only after the new one is
      complete, and loading takes the newest file that passes its checksum, so a write killed
      half-way leaves the previous checkpoint in use;
    * ``history.json``: the per-epoch metrics, for people.
    """

    _RESUME = re.compile(r"resume_e(\d+)\.pt$")

    def __init__(self, directory: "str | Path"):
        self.dir = Path(directory)

    def weights_path(self, epoch: float) -> Path:
        return self.dir / f"weights_e{_label(epoch)}.pt"

    def save_weights(self, epoch: float, state: dict) -> Path:
        return zcache.save_tensors(self.weights_path(epoch), state)

    def load_weights(self, epoch: float) -> dict:
        return zcache.load_tensors(self.weights_path(epoch))

    def weight_epochs(self) -> list[float]:
        out = []
        for p in self.dir.glob("weights_e*.pt"):
            with contextlib.suppress(ValueError):
                out.append(float(p.name[len("weights_e") : -3]))
        return sorted(out)

    def resume_epochs(self) -> list[int]:
        return sorted(
            int(m.group(1))
            for p in self.dir.glob("resume_e*.pt")
            if (m := self._RESUME.search(p.name))
        )

    def save_resume(self, epoch: int, state: dict) -> Path:
        path = zcache.save_tensors(self.dir / f"resume_e{epoch}.pt", state)
        for old in self.resume_epochs():
            if old < epoch:
                for f in (self.dir / f"resume_e{old}.pt", self.dir / f"resume_e{old}.pt.sha256"):
                    with contextlib.suppress(FileNotFoundError):
                        f.unlink()
        return path

    def latest_resume(self, at_most: int | None = None) -> dict | None:
        """The newest readable resume state (at most ``at_most`` epochs in), or None."""
        for e in reversed(self.resume_epochs()):
            if at_most is not None and e > at_most:
                continue
            try:
                return zcache.load_tensors(self.dir / f"resume_e{e}.pt")
            except zcache.CacheError:
                continue  # killed mid-write or corrupt: fall back to the previous one
        return None

    def save_history(self, history: list[dict]) -> None:
        """Write ``history.json`` unless a longer run of the same configuration wrote more
        (a shorter run is a prefix of it, epoch for epoch)."""
        path = self.dir / "history.json"
        if path.is_file() and len(json.loads(path.read_text())) > len(history):
            return
        zcache.atomic_write_json(path, history)


@dataclass
class TrainRun:
    """A finished (possibly cached) run: where its files are and what it measured."""

    spec: TrainSpec
    directory: Path
    history: list[EpochMetrics]
    checkpoint_epochs: list[float] = field(default_factory=list)

    @property
    def final(self) -> EpochMetrics:
        return self.history[-1]

    @property
    def train_seconds(self) -> float:
        return sum(h.train_seconds for h in self.history)

    def model(self, epoch: float | None = None) -> nn.Module:
        """The network at ``epoch`` (default: the end of the run), in eval mode on the CPU."""
        epoch = float(self.spec.profile.epochs if epoch is None else epoch)
        store = CheckpointStore(self.directory)
        if epoch not in store.weight_epochs():
            raise TrainError(
                f"no checkpoint at epoch {epoch:g} in {self.directory}; saved: "
                f"{[_label(e) for e in store.weight_epochs()]}"
            )
        model = build_model(self.spec)
        load_model_state(model, store.load_weights(epoch), f"checkpoint epoch {epoch:g}")
        return model.eval()
