"""Training throughput of ZF-mini, and the trainer against a bare PyTorch loop.

Both train the same freshly initialised model on the same pre-rendered batches with the same
arithmetic (forward, cross-entropy, backward, the profile's optimiser step, feature-scale
clipping) in the same (channels-last) memory format. The bare loop is nothing else;
``zfcore.train.train`` adds what a user gets: the data loader over the shard of each global
batch, running metrics, the progress bar, the early checkpoints written during the epoch, then
validation and the resume/weights files. The runs
alternate (bare, bare in the default memory format, trainer) round after round, and each ratio is
the median of the per-round ratios, since this machine is shared and its load drifts.

The batches are the profile's own size (64 on ``mini``; ``--batch-size`` times another), so the
trainer's rate is the rate of the main model's training steps, and the estimate of the main
model's minutes (its epochs of ``n_train // batch_size`` steps) is comparable with the
``train_seconds`` of its training history: training steps only, without the scenes' rendering
and the per-epoch validation (the history's ``val_seconds``). It is printed only when the batch
size is the profile's.

    python -m benchmarks.train            # ZF-mini: 8 batches of 64 at 112 px, 5 rounds
    python -m benchmarks.train --quick    # tiny profile, a smoke run
    python -m benchmarks.train --precision bf16   # what bfloat16 gains (or loses) on this CPU
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from benchmarks._result import parse
from zfcore import train as T
from zfcore.data import get_dataset
from zfcore.models import clip_filters_
from zfcore.profiles import Profile, get_profile


def schedule_images(profile: Profile, epochs: int | None = None) -> int:
    """Images the trainer steps through in ``epochs`` (default: the profile's) epochs: whole
    batches of ``n_train // batch_size`` steps, the last partial batch of each epoch dropped."""
    return (
        (profile.epochs if epochs is None else epochs)
        * (profile.n_train // profile.batch_size)
        * profile.batch_size
    )


def training_batches(profile: Profile, n_batches: int) -> tuple[torch.Tensor, torch.Tensor, list]:
    """The first ``n_batches * batch_size`` training images of ``profile`` with epoch 0's crops
    and flips, their labels, and the batches the trainer makes of them in its epoch-0 order."""
    n = n_batches * profile.batch_size
    x, y = get_dataset(profile, "train", augment=True, epoch=0).images(list(range(n)))
    order = T.epoch_order(n, profile.seed, 0)
    b = profile.batch_size
    return x, y, [(x[order[i : i + b]], y[order[i : i + b]]) for i in range(0, n, b)]


def bare_loop(
    spec: T.TrainSpec,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    channels_last: bool = True,
    precision: "str | None" = None,
) -> float:
    """The same training arithmetic with nothing around it; returns seconds. The trainer keeps
    activations channels-last (faster convolutions) and uses the profile's precision, so the
    strict comparison does too; ``channels_last=False`` is the loop as most tutorials write it,
    ``precision="fp32"`` the same loop in 32-bit arithmetic."""
    p = spec.profile if precision is None else spec.profile.replace(precision=precision)
    autocast = T.training_autocast(p, torch.device("cpu"))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    batches = [(x.contiguous(memory_format=fmt), y) for x, y in batches]
    model = T.build_model(spec).to(memory_format=fmt)
    if p.optimizer == "sgd":
        opt = torch.optim.SGD(
            model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay
        )
    else:
        adam = torch.optim.AdamW if p.optimizer == "adamw" else torch.optim.Adam
        opt = adam(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    model.train()
    t0 = time.perf_counter()
    for x, y in batches:
        with autocast:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if p.clip_rms is not None:
            clip_filters_(model, p.clip_rms)
    return time.perf_counter() - t0


def trainer(spec: T.TrainSpec, train_set, val_set) -> tuple[float, float]:
    """One epoch of ``zfcore.train.train`` in a fresh cache: (training-loop s, whole call s)."""
    with tempfile.TemporaryDirectory() as d:
        s = T.TrainSpec(spec.profile.replace(cache_dir=d), spec.arch, spec.variant, spec.options)
        t0 = time.perf_counter()
        run = T.train(s, train_set, val_set, progress=True)
        return run.final.train_seconds, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny profile, 4 batches, 1 round")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--batches", type=int, default=None)
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per batch (default: the profile's, as its training uses)",
    )
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the profile's)"
    )
    ap.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=None,
        help="arithmetic of the trainer and the bare loop (default: the profile's); with bf16, "
        "speedup_vs_fp32_loop says what bfloat16 gains or loses on this CPU",
    )
    args, record = parse(ap, argv, "train")
    profile = args.profile or ("tiny" if args.quick else "mini")
    n_batches = args.batches or (4 if args.quick else 8)
    rounds = args.rounds or (1 if args.quick else 5)
    full = get_profile(profile)
    batch_size = args.batch_size or full.batch_size
    chosen = {"precision": args.precision} if args.precision else {}
    spec = T.make_spec(profile, epochs=1, batch_size=batch_size, **chosen)
    p = spec.profile
    threads = args.threads or p.threads
    if threads:
        torch.set_num_threads(threads)

    n = n_batches * p.batch_size
    # The trainer visits the set in its epoch-0 order; the bare loop gets the same batches.
    x, y, batches = training_batches(p, n_batches)
    xv, yv = get_dataset(p, "val").images(list(range(p.batch_size)))
    train_set, val_set = TensorDataset(x, y), TensorDataset(xv, yv)

    bare_loop(spec, batches[:1])  # warm-up (allocator, kernels)
    bare_s, plain_s, fp32_s, loop_s, call_s = [], [], [], [], []
    for _ in range(rounds):
        bare_s.append(bare_loop(spec, batches))
        plain_s.append(bare_loop(spec, batches, channels_last=False))
        fp32_s.append(bare_loop(spec, batches, precision="fp32"))
        loop, call = trainer(spec, train_set, val_set)
        loop_s.append(loop)
        call_s.append(call)
    bare, plain, loop, call = (statistics.median(v) for v in (bare_s, plain_s, loop_s, call_s))
    ips_bare, ips_loop = n / bare, n / loop
    ratio = lambda a: statistics.median(x / b for x, b in zip(a, bare_s))  # noqa: E731
    r_plain, r_fp32, r_loop, r_call = ratio(plain_s), ratio(fp32_s), ratio(loop_s), ratio(call_s)

    print(
        f"\nZF-{profile}: {n_batches} batches of {p.batch_size} at {p.image_size} px, "
        f"{p.optimizer}, clip_rms={p.clip_rms}, {p.precision}, {torch.get_num_threads()} threads, "
        f"median of {rounds} alternating rounds"
    )
    print(f"{'':34s}{'seconds':>10s}{'images/s':>10s}{'time vs bare':>14s}")
    print(f"{'bare PyTorch loop':34s}{bare:10.2f}{ips_bare:10.0f}{1.0:14.3f}")
    print(f"{'bare loop, default memory format':34s}{plain:10.2f}{n / plain:10.0f}{r_plain:14.3f}")
    print(
        f"{'bare loop, fp32 arithmetic':34s}{statistics.median(fp32_s):10.2f}"
        f"{n / statistics.median(fp32_s):10.0f}{r_fp32:14.3f}"
    )
    print(f"{'zfcore.train, training loop':34s}{loop:10.2f}{ips_loop:10.0f}{r_loop:14.3f}")
    print(f"{'zfcore.train, whole call':34s}{call:10.2f}{n / call:10.0f}{r_call:14.3f}")
    print(
        "(whole call = the loop plus validation on one batch and writing the checkpoints of "
        "the epoch; seconds and images/s are medians, ratios medians of per-round ratios; "
        "per-round seconds: bare "
        + ", ".join(f"{v:.2f}" for v in bare_s)
        + "; trainer "
        + ", ".join(f"{v:.2f}" for v in loop_s)
        + ")"
    )
    # The main model's schedule at this throughput: every epoch's steps through the trainer's
    # loop, i.e. what the training history's train_seconds counts. (The whole call above adds
    # fixed costs per epoch, amortised over only a few batches here; the per-epoch validation of
    # the real run is in its history's val_seconds.)
    fields = {
        "images_per_s": f"{ips_loop:.1f}",
        "overhead_vs_bare_loop": f"{r_loop:.3f}",
        "bare_images_per_s": f"{ips_bare:.1f}",
        "whole_call_overhead": f"{r_call:.3f}",
        "speedup_vs_default_format_loop": f"{r_plain / r_loop:.3f}",
        "speedup_vs_fp32_loop": f"{r_fp32 / r_loop:.3f}",
        "precision": p.precision,
    }
    summary = (
        f"{profile} in {p.precision}, batches of {batch_size}, {torch.get_num_threads()} "
        f"thread(s): the trainer's loop at {r_loop:.2f}x the time of a bare PyTorch loop on the "
        f"same batches ({r_call:.2f}x with validation on one batch and the checkpoints of an "
        f"{n_batches}-batch epoch), {ips_loop:.0f} images/s"
    )
    if batch_size == full.batch_size:
        steps = full.epochs * (full.n_train // full.batch_size)
        main_minutes = schedule_images(full) / ips_loop / 60
        print(
            f"main model ({full.epochs} epochs of {full.n_train // full.batch_size} steps of "
            f"{full.batch_size} = {steps} steps): {main_minutes:.1f} min of training steps at "
            f"this rate (training steps only: rendering the scenes and the per-epoch validation "
            f"excluded)"
        )
        fields["main_model_minutes"] = f"{main_minutes:.1f}"
        summary += (
            f"; at that rate the main model's {steps} steps take {main_minutes:.1f} min of "
            f"training steps"
        )
    else:
        print(
            f"(no estimate of the main model: it trains on batches of {full.batch_size}, "
            f"not {batch_size})"
        )
    fields.update(batch_size=f"{batch_size}", profile=profile)
    record.finish(fields, summary=summary, target="<= 1.1x the bare loop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
