"""The comparison trainings of sections 4.1, 4.2 and 5.1, with seeds, run as one study.

Tables 2-3 (section 5.1) rank architectures by how well they end, Fig. 6 (section 4.1) compares
the first layers of two trained layouts, and section 4.2's reading of Fig. 4 suggests training
layers at different rates. Each of these compares *trained networks*, so here every one of them

* trains on the profile's complete schedule, annealing included
  (:func:`zfcore.train.comparison_overrides`): its Fig. 3 network with seed 0 *is* the main model;
* trains with ``profile.comparison_seeds`` seeds (initialisation, data order and dropout follow
  :attr:`zfcore.profiles.Profile.seed`), so every verdict's interval can include the variance
  between trainings (:func:`zfcore.paper.verdicts.hierarchical_bootstrap`);
* is evaluated once, in eval mode, into a :class:`NetworkRecord`: per-image top-1/top-5
  correctness on every validation image and on a fixed subset of training images (the
  overfitting gap), its history, steps, wall time and device, its first-layer filters and
  per-map layer-1 activity (Fig. 6). Records are small JSON files in
  ``figures/<profile>/study/``: the numbers behind the figures, committed beside them, so a
  study interrupted on one machine resumes on another, and a fresh clone's notebooks read what
  was recorded instead of training it again.

:func:`run_study` trains what is missing in ``workers`` processes side by side (each with
``threads`` torch threads; on a 2-core CPU two single-threaded processes use the cores at least
as well as one process on both), with one progress bar over the whole study whose time left is
estimated from each network's cost (:func:`job_cost`)::

    python -m zfcore.paper.comparisons --profile mini --workers 2   # the whole study, resumable
    python -m zfcore.paper.comparisons --profile mini --list        # what is recorded, missing

:func:`network_arrays` turns the records of several networks into the per-image arrays the
verdicts bootstrap (:func:`zfcore.paper.verdicts.hierarchical_bootstrap`). Notebooks 04
(:mod:`zfcore.paper.fig4_evolution`), 06 (:mod:`zfcore.paper.fig6_first_layer`) and 09
(:mod:`zfcore.paper.tables2_3_ablations`) read the study through their own modules.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures as cf
import dataclasses
import functools
import json
import multiprocessing
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import data
from ..cache import atomic_write_json, config_hash
from ..errors import ZFCoreError
from ..evolution import layer_convergence
from ..firstlayer import layer1_mean_activation
from ..locations import SAVE_FIGURES_ENV, figures_output_dir
from ..models import TABLE3_VARIANTS, eval_mode, model_fingerprint
from ..probes import per_image_correct
from ..profiles import Profile, get_profile
from ..report import git_commit
from ..train import (
    CheckpointStore,
    build_model,
    comparison_overrides,
    make_spec,
    rendered_split,
    training_run,
)

__all__ = [
    "Job",
    "NetworkRecord",
    "ComparisonError",
    "study_jobs",
    "early_layer_freeze",
    "job_cost",
    "train_eval_indices",
    "evaluation_sources",
    "record_network",
    "load_record",
    "missing_jobs",
    "run_study",
    "small_train_overrides",
    "study_cost",
    "network_records",
    "network_arrays",
    "main",
    "RECORD_VERSION",
    "EARLY_LAYERS",
    "SMALL_TRAIN_VARIANTS",
]

#: Bump when what a record holds or how it is measured changes (older records are then retrained).
RECORD_VERSION = 1

#: The layers frozen (or slowed) by the per-layer arms: the ones Fig. 4 shows settling first.
EARLY_LAYERS = ("layer1", "layer2")

#: The networks also trained on a small training set, where wider layers can overfit (Table 3).
SMALL_TRAIN_VARIANTS = ("zf", "fc6_7_8192", "conv3_4_5_wide_fc_8192")

#: Training images of the small training set, as a share of the profile's.
SMALL_TRAIN_SHARE = 0.25


def small_train_overrides(profile: "str | Profile") -> dict:
    """The small training set's training: :data:`SMALL_TRAIN_SHARE` of the training images for
    as many steps as the main model, every setting counted in epochs (the epochs, the warm-up,
    late dropout, the learning-rate drops, the checkpoints) stretched by the same factor. On the
    main model's epochs a quarter of the images is a quarter of the steps, and on ``mini`` that
    ends on the plateau at chance every recipe starts on (81.6 % validation error after 468
    steps), where no network can overfit: a from-scratch comparison must be trained until it
    fits."""
    P = get_profile(profile)
    n_train = max(P.batch_size, int(P.n_train * SMALL_TRAIN_SHARE))
    stretch = max(1, round(P.n_train / n_train))
    epochs = comparison_overrides(P)["epochs"]
    return {
        "n_train": n_train,
        "epochs": epochs * stretch,
        "warmup_epochs": P.warmup_epochs * stretch,
        "dropout_after": P.dropout_after * stretch,
        "lr_drop_epochs": tuple(e * stretch for e in P.lr_drop_epochs if e <= epochs),
        "checkpoint_epochs": tuple(e * stretch for e in P.checkpoint_epochs if e <= epochs),
    }


class ComparisonError(ZFCoreError, ValueError):
    """A bad study request (unknown group, variant, seed count) or a record of another study."""


@dataclass(frozen=True)
class Job:
    """One training of the study: ``group`` (``"table3"``, ``"krizhevsky"``, ``"per_layer"``,
    ``"small_train"``), the architecture, the Table 3 variant, the seed, and the overrides that
    make it what it is (trainer options such as ``freeze_after``, or ``n_train``), as sorted
    ``(name, value)`` pairs. ``arm`` names a per-layer arm (``"freeze"``, ``"rates"``)."""

    group: str
    arch: str = "zfnet"
    variant: str = "zf"
    seed: int = 0
    overrides: tuple = ()
    arm: str = ""

    @property
    def name(self) -> str:
        """The record's file stem, e.g. ``table3-no_layers6_7-s1`` or ``per_layer-freeze-s0``."""
        what = {"krizhevsky": "11x11_4", "per_layer": self.arm}.get(self.group, self.variant)
        return f"{self.group}-{what}-s{self.seed}"

    @property
    def network(self) -> str:
        """The network this job is one seed of (the record name without the seed)."""
        return self.name.rsplit("-s", 1)[0]

    def training_kwargs(self, profile: Profile) -> dict:
        """What :func:`zfcore.train.training_run` takes for this job on ``profile``."""
        kw = dict(comparison_overrides(profile), **dict(self.overrides))
        if self.seed != profile.seed:
            kw["seed"] = self.seed
        return dict(arch=self.arch, variant=self.variant, **kw)

    def spec(self, profile: Profile):
        return make_spec(profile, **self.training_kwargs(profile))

    def run(self, profile: Profile, progress: bool = False):
        """This job's training run on ``profile``: from the cache, else trained first."""
        return training_run(profile, progress=progress, **self.training_kwargs(profile))

    def key(self, profile: Profile) -> str:
        """The training configuration's hash (the cache key of its weights) and the record's
        version: a record made under another key belongs to another study."""
        return config_hash(
            {"train": self.spec(profile).key_config(), "record_version": RECORD_VERSION}
        )


def _pairs(d: dict) -> tuple:
    return tuple(
        sorted((k, tuple(sorted(v.items())) if isinstance(v, dict) else v) for k, v in d.items())
    )


def early_layer_freeze(
    profile: "str | Profile",
    n_images: int = 1000,
    topk_threshold: float = 0.5,
    weight_threshold: float = 0.9,
) -> dict:
    """The epoch after which the per-layer arm freezes each of :data:`EARLY_LAYERS`: the epoch
    from which its maps' top-9 stay final on the main model's own schedule (Fig. 4, measured by
    :func:`zfcore.evolution.layer_convergence` on the main run), at most the last epoch before
    the end, so that the frozen arm does save steps."""
    P = get_profile(profile)
    main = training_run(P, **comparison_overrides(P))
    conv = layer_convergence(
        main, n_images=n_images, topk_threshold=topk_threshold, weight_threshold=weight_threshold
    )
    last = comparison_overrides(P)["epochs"]
    return {
        layer: float(min(conv.topk_converged[layer], max(last - 1, 0.5))) for layer in EARLY_LAYERS
    }


def study_jobs(
    profile: "str | Profile",
    groups: "Iterable[str] | None" = None,
    variants: "Sequence[str] | str" = "all",
    seeds: "int | None" = None,
    freeze: "dict | None" = None,
    layer_lr: "dict | None" = None,
) -> list[Job]:
    """Every training of the study, seed 0 of every network first (so an interrupted study has
    one of each), then seed 1, and so on:

    * ``table3``: each Table 3 variant (:data:`zfcore.models.TABLE3_VARIANTS`, or ``variants``);
    * ``krizhevsky``: Krizhevsky et al.'s 11x11/4 first layer (Table 2, Fig. 6);
    * ``per_layer``: layers 1-2 frozen after ``freeze`` epochs (default
      :func:`early_layer_freeze`), and their rates multiplied by ``layer_lr`` (default 0.1);
    * ``small_train``: :data:`SMALL_TRAIN_VARIANTS` on a quarter of the training images, for as
      many steps as the main model (:func:`small_train_overrides`).
    """
    P = get_profile(profile)
    groups = list(groups or ("table3", "krizhevsky", "per_layer", "small_train"))
    unknown = sorted(set(groups) - {"table3", "krizhevsky", "per_layer", "small_train"})
    if unknown:
        raise ComparisonError(
            f"unknown study group(s) {unknown}: choose from table3, krizhevsky, per_layer, "
            f"small_train"
        )
    chosen = list(TABLE3_VARIANTS) if variants == "all" else list(variants)
    bad = [v for v in chosen if v not in TABLE3_VARIANTS]
    if bad or not chosen:
        raise ComparisonError(
            f"unknown variant(s) {bad}: choose from {list(TABLE3_VARIANTS)} or 'all'"
        )
    n_seeds = P.comparison_seeds if seeds is None else seeds
    if not isinstance(n_seeds, int) or n_seeds < 1:
        raise ComparisonError(f"seeds must be a positive int, not {n_seeds!r}")
    if "per_layer" in groups and freeze is None:
        freeze = early_layer_freeze(P)
    layer_lr = dict(layer_lr or {layer: 0.1 for layer in EARLY_LAYERS})
    small = small_train_overrides(P)
    jobs = []
    for s in range(n_seeds):
        seed = P.seed + s
        if "table3" in groups:
            jobs += [Job("table3", variant=v, seed=seed) for v in chosen]
        if "krizhevsky" in groups:
            jobs.append(Job("krizhevsky", arch="krizhevsky", seed=seed))
        if "per_layer" in groups:
            jobs += [
                Job(
                    "per_layer", seed=seed, overrides=_pairs({"freeze_after": freeze}), arm="freeze"
                ),
                Job("per_layer", seed=seed, overrides=_pairs({"layer_lr": layer_lr}), arm="rates"),
            ]
        if "small_train" in groups:
            jobs += [
                Job("small_train", variant=v, seed=seed, overrides=_pairs(small))
                for v in SMALL_TRAIN_VARIANTS
            ]
    return jobs


def _multiply_adds(model: nn.Module, image_size: int) -> int:
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad(), eval_mode(model):
        model(torch.zeros(1, 3, image_size, image_size))
    for h in handles:
        h.remove()
    return total


@functools.lru_cache(maxsize=None)
def _network_multiply_adds(profile: Profile, arch: str, variant: str) -> int:
    """Multiply-adds per image of one layout on ``profile`` (a job's overrides change its
    schedule and data, never its layers, so the study's 45 jobs build 6 networks, not 90)."""
    return _multiply_adds(build_model(make_spec(profile, arch, variant)), profile.image_size)


def job_cost(job: Job, profile: "str | Profile") -> float:
    """A job's cost relative to training the main model: training images times the network's
    multiply-adds per image (the forward pass; the backward pass scales with it)."""
    P = get_profile(profile)
    spec = job.spec(P)
    ref = make_spec(P, **comparison_overrides(P))
    ratio = _network_multiply_adds(P, job.arch, job.variant) / _network_multiply_adds(
        P, "zfnet", "zf"
    )
    return ratio * spec.profile.n_train * spec.profile.epochs / (P.n_train * ref.profile.epochs)


def study_cost(profile: "str | Profile") -> float:
    """The whole study (:func:`study_jobs`, every group and seed) in trainings of the main model
    (:func:`job_cost`; the per-layer arms count whole, whatever their freezing epoch)."""
    P = get_profile(profile)
    jobs = study_jobs(P, freeze={layer: 1.0 for layer in EARLY_LAYERS})
    return sum(job_cost(j, P) for j in jobs)


# ---------------------------------------------------------------------------------------------
# One network's record
# ---------------------------------------------------------------------------------------------


def train_eval_indices(profile: "str | Profile") -> torch.Tensor:
    """The fixed training subset whose eval-mode error shows overfitting: the first
    ``min(n_val, n_train)`` training images (as many as the validation set, so both errors have
    the same binomial noise)."""
    P = get_profile(profile)
    return torch.arange(min(P.n_val, P.n_train))


def evaluation_sources(profile: "str | Profile"):
    """The training and validation images, unaugmented: the trainer's in-memory rendering of a
    procedural split (shared with any training in this process) or the profile's data set."""
    P = get_profile(profile)
    return tuple(rendered_split(P, s) or data.get_dataset(P, s) for s in ("train", "val"))


def _pack(mask: torch.Tensor) -> str:
    return np.packbits(np.asarray(mask, dtype=bool)).tobytes().hex()


def _unpack(text: str, n: int) -> torch.Tensor:
    return torch.from_numpy(
        np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(bool)
    )


def _floats(t: torch.Tensor) -> dict:
    t = t.detach().float().cpu().contiguous()
    return {
        "shape": list(t.shape),
        "float32_base64": base64.b64encode(t.numpy().tobytes()).decode(),
    }


def _tensor(d: dict) -> torch.Tensor:
    return torch.from_numpy(
        np.frombuffer(base64.b64decode(d["float32_base64"]), dtype=np.float32).copy()
    ).reshape(d["shape"])


def _device_text(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(
            line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")
        )
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"cpu ({name}, {torch.get_num_threads()} threads)"


def _tuples(v):
    """JSON's lists back to the tuples a :class:`Job`'s overrides hold (pairs, epoch lists)."""
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


@dataclass
class NetworkRecord:
    """What the comparisons need of one trained network: per-image correctness in eval mode
    (``val_top1``/``val_top5`` on every validation image, ``train_top1``/``train_top5`` on
    :func:`train_eval_indices`), the running training error of its last epoch, validation error
    per epoch, steps and seconds of training, the first-layer filters and the mean layer-1
    activity per map on the first validation images (Fig. 6), and where it was made."""

    job: Job
    key: str
    val_top1: torch.Tensor
    val_top5: torch.Tensor
    train_top1: torch.Tensor
    train_top5: torch.Tensor
    train_running_top1_error: float
    val_top1_error_per_epoch: list
    steps: int
    train_seconds: float
    layer1_filters: torch.Tensor
    layer1_activity: torch.Tensor
    provenance: dict = field(default_factory=dict)

    @property
    def val_top1_error(self) -> float:
        return 100.0 * (1 - float(self.val_top1.float().mean()))

    @property
    def val_top5_error(self) -> float:
        return 100.0 * (1 - float(self.val_top5.float().mean()))

    @property
    def train_top1_error(self) -> float:
        return 100.0 * (1 - float(self.train_top1.float().mean()))

    def to_json(self) -> dict:
        return {
            "record_version": RECORD_VERSION,
            "job": dataclasses.asdict(self.job),
            "name": self.job.name,
            "key": self.key,
            "n_val": len(self.val_top1),
            "n_train_eval": len(self.train_top1),
            "val_top1": _pack(self.val_top1),
            "val_top5": _pack(self.val_top5),
            "train_top1": _pack(self.train_top1),
            "train_top5": _pack(self.train_top5),
            "val_top1_error": self.val_top1_error,
            "train_top1_error": self.train_top1_error,
            "train_running_top1_error": self.train_running_top1_error,
            "val_top1_error_per_epoch": self.val_top1_error_per_epoch,
            "steps": self.steps,
            "train_seconds": self.train_seconds,
            "layer1_filters": _floats(self.layer1_filters),
            "layer1_activity": _floats(self.layer1_activity),
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, d: dict) -> "NetworkRecord":
        j = d["job"]
        job = Job(
            j["group"],
            j["arch"],
            j["variant"],
            j["seed"],
            tuple((k, _tuples(v)) for k, v in j["overrides"]),
            j.get("arm", ""),
        )
        nv, nt = d["n_val"], d["n_train_eval"]
        return cls(
            job,
            d["key"],
            _unpack(d["val_top1"], nv),
            _unpack(d["val_top5"], nv),
            _unpack(d["train_top1"], nt),
            _unpack(d["train_top5"], nt),
            d["train_running_top1_error"],
            list(d["val_top1_error_per_epoch"]),
            d["steps"],
            d["train_seconds"],
            _tensor(d["layer1_filters"]),
            _tensor(d["layer1_activity"]),
            d.get("provenance", {}),
        )


def _record_dirs(P: Profile) -> list[Path]:
    """Where records are read: the committed ledger first, then where this process writes."""
    dirs = [Path(P.figures_dir) / "study", figures_output_dir(P) / "study"]
    return list(dict.fromkeys(dirs))


def load_record(job: Job, profile: "str | Profile") -> "NetworkRecord | None":
    """The record of ``job`` if one was made under the same training configuration, else None."""
    P = get_profile(profile)
    key = job.key(P)
    for d in _record_dirs(P):
        f = d / f"{job.name}.json"
        if f.is_file():
            try:
                rec = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if rec.get("key") == key and rec.get("record_version") == RECORD_VERSION:
                return NetworkRecord.from_json(rec)
    return None


def missing_jobs(jobs: Sequence[Job], profile: "str | Profile") -> list[Job]:
    """The jobs without a record (:func:`load_record`)."""
    return [j for j in jobs if load_record(j, profile) is None]


def record_network(
    job: Job, profile: "str | Profile", *, progress: bool = False, fig6_images: int = 500
) -> NetworkRecord:
    """Train ``job`` (or load it from the cache), evaluate it in eval mode and write its record
    to ``figures/<profile>/study/<job name>.json`` (atomically)."""
    P = get_profile(profile)
    run = job.run(P, progress=progress)
    model = run.model().to(P.device)
    train_set, val_set = evaluation_sources(P)
    v1, v5 = per_image_correct(model, val_set, k=(1, 5), device=P.device)
    t1, t5 = per_image_correct(model, train_set, train_eval_indices(P), k=(1, 5), device=P.device)
    images = (
        data.get_dataset(P, "val").images(list(range(min(fig6_images, P.n_val))))[0].to(P.device)
    )
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    spec = run.spec
    steps = (spec.profile.n_train // spec.profile.batch_size) * spec.profile.epochs
    rec = NetworkRecord(
        job,
        job.key(P),
        v1.cpu(),
        v5.cpu(),
        t1.cpu(),
        t5.cpu(),
        run.final.train_top1_error,
        [h.val_top1_error for h in run.history],
        steps,
        run.train_seconds,
        first.weight.detach().cpu(),
        layer1_mean_activation(model, images).cpu(),
        {
            "commit": git_commit(),
            "device": _device_text(P.device),
            "torch": torch.__version__,
            "model_fingerprint": model_fingerprint(model.cpu()),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "train_directory": run.directory.name,
        },
    )
    out = figures_output_dir(P) / "study"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{job.name}.json", rec.to_json())
    return rec


def _worker(profile: Profile, job: Job, threads: int) -> str:
    torch.set_num_threads(threads)
    record_network(job, profile, progress=False)
    return job.name


def _done_share(job: Job, P: Profile) -> float:
    """How much of ``job``'s training is on disk (its latest checkpoint over its epochs)."""
    spec = job.spec(P)
    store = CheckpointStore(spec.entry())
    if not store.dir.is_dir():
        return 0.0
    done = [e for e in store.weight_epochs() if e <= spec.profile.epochs]
    return max(done, default=0.0) / spec.profile.epochs


def run_study(
    profile: "str | Profile",
    jobs: "Sequence[Job] | None" = None,
    *,
    workers: int = 2,
    threads: int = 1,
    progress: bool = True,
) -> dict:
    """Train and record every job without a record, ``workers`` processes side by side with
    ``threads`` torch threads each (``workers=1`` trains in this process). One progress bar
    covers the whole study in units of the main model's training (:func:`job_cost`); its rate and
    time left follow the checkpoints the workers write. Returns ``{"trained": [...], "recorded":
    [...], "seconds": wall time, "cost": main-model trainings done}``. An interrupted study
    resumes where it stopped: recorded jobs are skipped, a half-trained one resumes from its
    last checkpoint."""
    P = get_profile(profile)
    jobs = list(jobs if jobs is not None else study_jobs(P))
    if not isinstance(workers, int) or workers < 1 or not isinstance(threads, int) or threads < 1:
        raise ComparisonError(
            f"workers and threads must be positive ints, not {workers!r}, {threads!r}"
        )
    todo = missing_jobs(jobs, P)
    costs = {j.name: job_cost(j, P) for j in todo}
    t0 = time.perf_counter()
    bar = tqdm(
        total=round(sum(costs.values()), 2),
        unit="model",
        disable=not progress,
        desc=f"comparison study {P.name}: {len(todo)} of {len(jobs)} networks to train",
    )
    done_cost = 0.0
    if workers == 1:
        torch.set_num_threads(threads)
        for j in todo:
            record_network(j, P)
            done_cost += costs[j.name]
            bar.update(round(costs[j.name], 2))
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            pending = {pool.submit(_worker, P, j, threads): j for j in todo}
            while pending:
                finished, _ = cf.wait(pending, timeout=15, return_when=cf.FIRST_COMPLETED)
                for f in finished:
                    j = pending.pop(f)
                    f.result()  # a failed training stops the study, loudly
                    done_cost += costs[j.name]
                partial = sum(costs[j.name] * _done_share(j, P) for j in pending.values())
                bar.n = round(done_cost + partial, 2)
                bar.refresh()
    bar.close()
    return {
        "trained": [j.name for j in todo],
        "recorded": [j.name for j in jobs],
        "seconds": time.perf_counter() - t0,
        "cost": sum(costs.values()),
    }


def network_records(
    profile: "str | Profile",
    jobs: Sequence[Job],
    *,
    train_missing: bool = True,
    workers: int = 1,
    threads: "int | None" = None,
) -> dict[str, NetworkRecord]:
    """The record of every job, by job name; missing ones are trained first (:func:`run_study`)
    unless ``train_missing`` is False, when they are left out."""
    P = get_profile(profile)
    found = {j.name: load_record(j, P) for j in jobs}
    missing = [j for j in jobs if found[j.name] is None]
    if train_missing and missing:
        run_study(
            P, missing, workers=workers, threads=threads or P.threads or torch.get_num_threads()
        )
        found.update({j.name: load_record(j, P) for j in missing})
    return {name: rec for name, rec in found.items() if rec is not None}


def network_arrays(
    records: "Mapping[str, Sequence[NetworkRecord]]",
) -> dict[str, dict[str, np.ndarray]]:
    """Per network, its seeds' per-image top-1 correctness as ``(seeds, images)`` arrays on the
    validation images (``"val"``) and the training subset (``"train"``): the input of
    :func:`zfcore.paper.verdicts.hierarchical_bootstrap`."""
    return {
        k: {
            "val": np.stack([r.val_top1.numpy() for r in recs]).astype(float),
            "train": np.stack([r.train_top1.numpy() for r in recs]).astype(float),
        }
        for k, recs in records.items()
    }


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m zfcore.paper.comparisons",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--profile", default="mini")
    ap.add_argument(
        "--groups",
        default="table3,krizhevsky,per_layer,small_train",
        help="comma-separated: table3, krizhevsky, per_layer, small_train",
    )
    ap.add_argument(
        "--seeds", type=int, default=None, help="seeds per network (default: the profile's)"
    )
    ap.add_argument(
        "--networks",
        default=None,
        help="comma-separated networks to train first and only, e.g. table3-zf,krizhevsky-11x11_4 "
        "(a job's name without its seed; --list shows them)",
    )
    ap.add_argument(
        "--device",
        default=None,
        help="where to train, e.g. cuda (default: the profile's); not part of any cache key, so "
        "records made on a GPU and on the CPU complete the same study, each naming its device",
    )
    ap.add_argument("--workers", type=int, default=2, help="training processes side by side")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument(
        "--list",
        action="store_true",
        help="print what is recorded and what is missing; train nothing",
    )
    ap.add_argument(
        "--draft",
        action="store_true",
        help="write the records to the build folder instead of figures/<profile>/study",
    )
    args = ap.parse_args(argv)
    if not args.draft:  # the study's records are numbers of record, like the figures
        os.environ[SAVE_FIGURES_ENV] = "1"
    P = get_profile(args.profile, **({"device": args.device} if args.device else {}))
    jobs = study_jobs(P, args.groups.split(","), seeds=args.seeds)
    if args.networks:
        wanted = args.networks.split(",")
        unknown = sorted(set(wanted) - {j.network for j in jobs})
        if unknown:
            ap.error(f"unknown network(s) {unknown}; known: {sorted({j.network for j in jobs})}")
        jobs = [j for j in jobs if j.network in wanted]
    if args.list:
        missing = {j.name for j in missing_jobs(jobs, P)}
        for j in jobs:
            state = "missing " if j.name in missing else "recorded"
            print(f"{state} {j.name}  (cost {job_cost(j, P):.2f} main models)")
        print(f"{len(jobs) - len(missing)} of {len(jobs)} recorded")
        return 0
    out = run_study(P, jobs, workers=args.workers, threads=args.threads)
    print(
        f"trained {len(out['trained'])} network(s), {out['cost']:.2f} main-model trainings, in "
        f"{out['seconds'] / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
