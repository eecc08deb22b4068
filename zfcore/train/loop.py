"""The training loop of section 3, resumable and distributed.

Section 3: the learning rate is "annealed by hand when the validation error plateaus"; here a
rule does it (``plateau_patience``, ``plateau_factor``). After every step each convolutional
filter whose RMS exceeds ``profile.clip_rms`` (the paper's 1e-1) is renormalised to it
(feature-scale clipping, :func:`zfcore.models.clip_filters_`; off with ``clip_rms=None``).

Two options of the small profiles, outside the paper: late dropout (``profile.dropout_after``:
dropout switched on only after that many epochs, which shortens the loss plateau at the start) and
bfloat16 training steps (``profile.precision``).

Properties the tests check: deterministic under ``profile.seed`` on CPU; resumable bit-for-bit
(training is a function of (configuration, epoch), so stopping after any epoch and resuming
gives the same weights and metrics); DistributedDataParallel through ``torchrun`` with the same
entry point reaches the weights of one process with the same global batch (``batch_size`` is the
global batch, split evenly over the processes; only rank 0 writes files); a checkpoint write
killed half-way leaves the previous checkpoint in use.

:func:`compare_throughput` times the same steps now, for configurations side by side (e.g.
per-layer freezing against one global rate), since the wall times recorded in a run's history
depend on the machine's load when it was trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from typing import Callable, Iterator, Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .. import cache as zcache
from ..health import FireCounter
from ..models import clip_filters_count_, conv_layers, filter_rms, layer_key, load_model_state
from ..profiles import Profile
from .batches import (
    RenderedScenes,
    as_source,
    default_sources,
    derived_seed,
    rendered_split,
    source_length,
    train_batches,
    train_eval_source,
)
from .checkpoints import CheckpointStore, TrainRun
from .metrics import EpochMetrics, batch_counts, evaluate, summarise_counts
from .network import (
    apply_freeze,
    build_model,
    frozen_layers,
    make_optimizer,
    set_learning_rates,
)
from .spec import LAYER_KEYS, TrainError, TrainOptions, TrainSpec, make_spec


def _distributed() -> tuple[int, int]:
    if _grouped():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _grouped() -> bool:
    """Whether this process is in a process group (``torchrun``): then the model trains wrapped
    in DistributedDataParallel, even alone (``--nproc_per_node=1``)."""
    return dist.is_available() and dist.is_initialized()


def _device(profile: Profile) -> torch.device:
    if profile.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainError(
                f"profile {profile.name!r} asks for device {profile.device!r} but CUDA "
                f"is not available; pass device='cpu'"
            )
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(profile.device)


def train(
    spec: TrainSpec,
    train_set=None,
    val_set=None,
    progress: bool = True,
    on_step: "Callable[[int, torch.Tensor], None] | None" = None,
) -> TrainRun:
    """Train ``spec`` for ``spec.profile.epochs`` epochs, resuming from its cache entry.

    In a process group (``torchrun``) every process calls this; gradients are averaged by
    DistributedDataParallel and only rank 0 writes files. ``train_set``/``val_set`` default to
    ``zfcore.data.get_dataset(profile, "train"/"val")``. ``on_step(step, loss)``, if given, is
    called after every optimiser step with the global step (from 1) and the batch's loss, a
    tensor on the training device (reading it waits for the device: keep it and read later).

    On a GPU (``profile.device="cuda"``) nothing in a step reads a value back from the device,
    batches are made ahead of it (:func:`zfcore.train.batches.train_batches`), and
    ``data_seconds`` in the history says how long the loop waited for them.
    """
    p = spec.profile
    rank, world = _distributed()
    if p.batch_size % world:
        raise TrainError(
            f"batch_size {p.batch_size} is the global batch and must divide by the "
            f"{world} processes"
        )
    if train_set is None or val_set is None:
        dtrain, dval = default_sources(spec)
        train_set = dtrain if train_set is None else as_source(train_set)
        val_set = dval if val_set is None else as_source(val_set)
    else:
        train_set, val_set = as_source(train_set), as_source(val_set)
    n_train = source_length(train_set)
    if n_train < p.batch_size:
        raise TrainError(f"the training set ({n_train} images) is smaller than one batch")
    store = CheckpointStore(spec.entry())
    device = _device(p)
    steps = n_train // p.batch_size
    keep = spec.checkpoint_epochs()

    # channels_last: the same arithmetic in the memory layout fast convolutions want (oneDNN, cuDNN)
    model = build_model(spec).to(device, memory_format=torch.channels_last)
    opt = make_optimizer(spec, model)
    history: list[dict] = []
    plateau = {"best": math.inf, "bad_epochs": 0, "scale": 1.0}
    start = 0
    state = store.latest_resume(at_most=p.epochs)
    if state is not None:
        load_model_state(model, state["model"], f"resume state in {store.dir}")
        opt.load_state_dict(state["optimizer"])
        history, plateau, start = (
            list(state["history"]),
            dict(state["plateau"]),
            int(state["epoch"]),
        )
    if rank == 0:
        zcache.atomic_write_json(store.dir / "config.json", zcache.canonical(spec.key_config()))

    for source in (train_set, val_set):
        if isinstance(source, RenderedScenes) and start < p.epochs:
            source.prefetch(progress=progress and rank == 0)
    train_eval = train_eval_source(train_set, spec)
    net, frozen = model, None
    autocast = training_autocast(p, device)
    bar_steps = (p.epochs - start) * steps
    bar = _progress(bar_steps, f"train {p.name}/{spec.arch}/{spec.variant}", progress and rank == 0)
    for epoch in range(start, p.epochs):
        torch.manual_seed(derived_seed("dropout", p.seed, epoch, rank))
        net.train()
        counts = torch.zeros(4, dtype=torch.float64, device=device)
        clipped = torch.zeros((), dtype=torch.int64, device=device)
        fractional = {round((e - epoch) * steps): e for e in keep if epoch < e < epoch + 1}
        waited = [0.0]
        t0 = time.perf_counter()
        batches = _timed(train_batches(train_set, spec, epoch, rank, world, steps, device), waited)
        for s, (x, y) in enumerate(batches, 1):
            set_dropout(model, p, epoch + (s - 1) / steps)
            now_frozen = frozen_layers(spec, epoch + (s - 1) / steps)
            if now_frozen != frozen:
                frozen = now_frozen
                apply_freeze(model, frozen)
                net = _wrap_ddp(model, device) if _grouped() else model
                net.train()
            x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            set_learning_rates(opt, spec, plateau["scale"], epoch * steps + s - 1, steps)
            with autocast:
                out = net(x)
                loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if p.clip_rms is not None:
                clipped += clip_filters_count_(model, p.clip_rms)
            counts += batch_counts(out.detach(), y, loss)
            if on_step is not None:
                on_step(epoch * steps + s, loss.detach())
            if s in fractional and rank == 0:
                store.save_weights(fractional[s], _cpu_state(model))
            if bar is not None:
                bar.update(1)
                if s % 10 == 0 or s == steps:
                    _postfix(bar, counts, world, p.batch_size * s / (time.perf_counter() - t0))
        if world > 1:
            dist.all_reduce(counts)
        _synchronize(device)  # the epoch's steps have run, not only been queued
        train_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        fires = FireCounter(model)
        with fires.watch(model):
            val = evaluate(
                model,
                val_set,
                batch_size=max(p.batch_size, 256),
                device=device,
                rank=rank,
                world=world,
                num_workers=p.num_workers,
            )
        fit = evaluate(
            model,
            train_eval,
            batch_size=max(p.batch_size, 256),
            device=device,
            rank=rank,
            world=world,
            num_workers=p.num_workers,
            limit=min(source_length(val_set), n_train),
        )
        dead = fires.result() if world == 1 else None  # per-process counts; only exact unsharded
        tl, t1e, t5e = summarise_counts(counts.cpu())
        history.append(
            dataclasses.asdict(
                EpochMetrics(
                    epoch=epoch + 1,
                    lr=p.lr * plateau["scale"] * 0.1 ** sum(epoch >= e for e in p.lr_drop_epochs),
                    train_loss=tl,
                    train_top1_error=t1e,
                    train_top5_error=t5e,
                    val_loss=val["loss"],
                    val_top1_error=val["top1_error"],
                    val_top5_error=val["top5_error"],
                    train_seconds=train_seconds,
                    val_seconds=time.perf_counter() - t1,
                    images_per_s=steps * p.batch_size / train_seconds,
                    clipped_filters=int(clipped),
                    train_eval_top1_error=fit["top1_error"],
                    train_eval_top5_error=fit["top5_error"],
                    dead_share={k: dead.dead_share(k) for k in dead.fire_counts} if dead else {},
                    max_filter_rms=max(float(filter_rms(c).max()) for c in conv_layers(model)),
                    data_seconds=waited[0],
                )
            )
        )
        _anneal_on_plateau(opt, plateau, val["top1_error"], spec.options)
        if bar is not None:
            bar.write(
                f"epoch {epoch + 1}/{p.epochs}: train loss {tl:.3f} err {t1e:.1f}% | "
                f"val loss {val['loss']:.3f} err {val['top1_error']:.1f}% "
                f"top5 {val['top5_error']:.1f}% | {history[-1]['images_per_s']:.0f} img/s"
            )
        if rank == 0:
            if float(epoch + 1) in keep:
                store.save_weights(epoch + 1, _cpu_state(model))
            store.save_resume(
                epoch + 1,
                {
                    "model": _cpu_state(model),
                    "optimizer": opt.state_dict(),
                    "plateau": plateau,
                    "history": history,
                    "epoch": epoch + 1,
                },
            )
            store.save_history(history)
    if bar is not None:
        bar.close()
    if world > 1:
        dist.barrier()
    if rank == 0 and float(p.epochs) not in store.weight_epochs():
        store.save_weights(p.epochs, _cpu_state(model))  # resumed exactly at the end
    return TrainRun(
        spec,
        store.dir,
        [EpochMetrics(**h) for h in history[: p.epochs]],
        [x for x in store.weight_epochs() if x <= p.epochs],
    )


def _synchronize(device: torch.device) -> None:
    """Wait for ``device`` (a GPU runs queued work asynchronously; the CPU does not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(items: Iterator, waited: list) -> Iterator:
    """``items``, adding to ``waited[0]`` the seconds spent waiting for each."""
    items = iter(items)
    try:
        while True:
            t = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            waited[0] += time.perf_counter() - t
            yield item
    finally:
        if hasattr(items, "close"):
            items.close()  # a loop left early stops the batches made ahead


def set_dropout(model: nn.Module, profile: Profile, progress: float) -> None:
    """Late dropout: no dropout for the first ``profile.dropout_after`` epochs, then
    ``profile.dropout`` (the paper's 0.5 in layers 6 and 7). Dropout slows the escape from the
    loss plateau at the start and is there against overfitting, which comes later."""
    rate = profile.dropout if progress >= profile.dropout_after - 1e-9 else 0.0
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = rate


def training_autocast(profile: Profile, device: torch.device):
    """The context of a training step's forward pass: bfloat16 autocast when
    ``profile.precision == "bf16"`` (matrix products and convolutions in bfloat16, timed by
    ``benchmarks.train``; weights, gradients and the optimiser stay fp32), else none."""
    if profile.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def _wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _anneal_on_plateau(
    opt: torch.optim.Optimizer, plateau: dict, val_error: float, options: TrainOptions
) -> None:
    """Section 3: "annealed by hand when the validation error plateaus", made a rule."""
    if options.plateau_patience == 0:
        return
    if val_error < plateau["best"] - 1e-9:
        plateau["best"], plateau["bad_epochs"] = float(val_error), 0
        return
    plateau["bad_epochs"] += 1
    if plateau["bad_epochs"] >= options.plateau_patience:
        for g in opt.param_groups:
            g["lr"] *= options.plateau_factor
        plateau["scale"] *= options.plateau_factor
        plateau["bad_epochs"] = 0


def _progress(total: int, desc: str, enabled: bool):
    if not enabled or total <= 0:
        return None
    return tqdm(total=total, desc=desc, unit="batch", leave=True, mininterval=0.5)


def _postfix(bar, counts: torch.Tensor, world: int, images_per_s: float) -> None:
    loss, e1, _ = summarise_counts(counts.cpu())
    bar.set_postfix(
        loss=f"{loss:.3f}",
        acc=f"{100 - e1:.1f}%",
        img_s=f"{images_per_s * world:.0f}",
        refresh=False,
    )


def compare_throughput(
    profile: "str | Profile",
    frozen: "Mapping[str, Sequence[str]]",
    steps: int = 3,
    rounds: int = 2,
    device: "str | torch.device" = "cpu",
    **overrides,
) -> dict[str, float]:
    """Training images per second of the profile's model with different sets of frozen layers,
    measured now, alternating, on one batch of training images (median of ``rounds``), on
    ``device`` (the batch is there before the clock starts: the steps' compute alone).

    Wall times recorded when runs were trained depend on the machine's load at the time; this
    compares the compute of configurations (e.g. per-layer freezing against one global rate)
    under the same load.
    """
    spec = make_spec(profile, **overrides)
    p = spec.profile
    memo = rendered_split(p, "train")
    idx = list(range(p.batch_size))
    if memo is None:
        raise TrainError(
            f"compare_throughput renders a batch of procedural scenes; profile "
            f"{p.name!r} has none (use tiny or mini)"
        )
    device = torch.device(device)
    x, y = memo.batch(idx, 0, augment=False, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    results: dict[str, list[float]] = {name: [] for name in frozen}
    for _ in range(rounds):
        for name, layers in frozen.items():
            model = build_model(spec).to(device, memory_format=torch.channels_last)
            apply_freeze(model, {layer_key(l, LAYER_KEYS) for l in layers})
            opt = make_optimizer(spec, model)
            model.train()
            for i in range(steps + 1):  # the first step warms up
                if i == 1:
                    _synchronize(device)
                    t0 = time.perf_counter()
                with training_autocast(p, x.device):
                    loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            _synchronize(device)
            results[name].append(steps * len(x) / (time.perf_counter() - t0))
    return {name: sorted(v)[len(v) // 2] for name, v in results.items()}
