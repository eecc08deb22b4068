"""The comparison study's way of training (networks side by side) against one network at a time.

``zfcore.paper.comparisons.run_study`` trains the study's networks in ``workers`` processes side
by side, each with ``threads`` torch threads (2 x 1 on a 2-core CPU), instead of one after another
in one process with every core. Both arms here do the same work: ``workers`` networks of N steps
each, on the same pre-rendered batches of the profile's training data at its own batch size
(epoch 0's crops and flips, in the trainer's order), with the same arithmetic
(``benchmarks.train.bare_loop``: a fresh ``zfcore.train.build_model`` network, forward,
cross-entropy, backward, the profile's optimiser step, feature-scale clipping).

* side by side: ``workers`` spawned processes, each setting its torch threads before any work,
  train one network each; the wall time runs from a barrier they all pass to the last one's end;
* one process: this process, with every core, trains the same networks one after the other (as
  ``run_study(workers=1)`` does).

The spawned processes start once, load the batches and take one warm-up step before the first
round, as does this process; the arms then alternate round after round (which goes first
alternating too), and the speed-up is the median of the per-round ratios, since this machine is
shared and its load drifts.

The study's wall time is estimated from each arm's throughput: every job of
``zfcore.paper.comparisons.study_jobs`` weighed by ``job_cost`` (in trainings of the main model:
its epochs of ``n_train // batch_size`` steps of the Fig. 3 network), training steps only. The
per-layer arms' freezing epoch is set to 1 rather than measured on the trained main model
(``job_cost`` does not discount frozen layers, so the frozen arm counts as a whole training
whatever the epoch). The side-by-side estimate assumes every worker stays busy to the end.

    python -m benchmarks.study            # mini: 2 networks x 6 steps of 64 at 112 px, 4 rounds
    python -m benchmarks.study --quick    # tiny profile, a smoke run
"""

from __future__ import annotations

import argparse
import inspect
import multiprocessing
import os
import queue
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._result import parse
from benchmarks.train import bare_loop, schedule_images, training_batches
from zfcore import train as T
from zfcore.paper.comparisons import EARLY_LAYERS, job_cost, run_study, study_jobs
from zfcore.profiles import Profile

#: run_study's own defaults: how the study trains when nobody says otherwise.
STUDY_DEFAULTS = {
    k: inspect.signature(run_study).parameters[k].default for k in ("workers", "threads")
}


def _train(spec: T.TrainSpec, batches: list, networks: int) -> tuple[float, float]:
    """``networks`` fresh networks trained in turn on ``batches``: (start, end) of the whole."""
    start = time.perf_counter()
    for _ in range(networks):
        bare_loop(spec, batches)
    return start, time.perf_counter()


def _serve(spec: T.TrainSpec, path: str, threads: int, barrier, commands, results) -> None:
    """A side-by-side process: ``threads`` torch threads first, then for every round it is sent,
    one fresh network trained on the saved batches from the barrier on; reports (start, end)."""
    torch.set_num_threads(threads)
    batches = torch.load(path, weights_only=True)
    bare_loop(spec, batches[:1])  # warm-up (allocator, kernels)
    results.put("ready")
    while commands.get():
        barrier.wait()
        results.put(_train(spec, batches, 1))


def _collect(results, n: int, procs: list, timeout: float = 1800.0) -> list:
    """``n`` reports from ``procs``; raises if one of them dies or nothing comes in time."""
    out, t0 = [], time.perf_counter()
    while len(out) < n:
        try:
            out.append(results.get(timeout=1.0))
        except queue.Empty:
            dead = [p for p in procs if p.exitcode is not None]
            if dead or time.perf_counter() - t0 > timeout:
                raise RuntimeError(
                    f"a benchmark process stopped (exit codes {[p.exitcode for p in procs]})"
                )
    return out


class _SideBySide:
    """``processes`` spawned processes with ``threads`` torch threads each, one network each."""

    def __init__(self, spec, path: str, processes: int, threads: int):
        ctx = multiprocessing.get_context("spawn")
        self.results = ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(processes)]
        self.barrier = ctx.Barrier(processes)  # kept alive as long as they run
        self.procs = [
            ctx.Process(
                target=_serve,
                daemon=True,
                args=(spec, path, threads, self.barrier, c, self.results),
            )
            for c in self.commands
        ]
        for p in self.procs:
            p.start()

    def ready(self) -> None:
        _collect(self.results, len(self.procs), self.procs)

    def round(self) -> float:
        """Wall seconds from the first process's start to the last one's end."""
        for c in self.commands:
            c.put(True)
        spans = _collect(self.results, len(self.procs), self.procs)
        return max(e for _, e in spans) - min(s for s, _ in spans)

    def close(self) -> None:
        for c in self.commands:
            c.put(False)
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join()


def study_cost(profile: Profile) -> tuple[float, int]:
    """The whole study in trainings of the main model (``job_cost`` summed over every job and
    seed) and its number of jobs; the per-layer arms freeze after epoch 1 (see the module)."""
    jobs = study_jobs(profile, freeze={layer: 1.0 for layer in EARLY_LAYERS})
    cost: dict[str, float] = {}
    for j in jobs:  # seeds change the weights, not the cost
        if j.network not in cost:
            cost[j.network] = job_cost(j, profile)
    return sum(cost[j.network] for j in jobs), len(jobs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="tiny profile, 4 steps per network, 1 round"
    )
    ap.add_argument("--profile", default=None)
    ap.add_argument(
        "--steps", type=int, default=None, help="training steps per network (default 6; --quick 4)"
    )
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument(
        "--workers",
        type=int,
        default=STUDY_DEFAULTS["workers"],
        help="processes side by side, as run_study (also the number of networks per arm)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=STUDY_DEFAULTS["threads"],
        help="torch threads per side-by-side process, as run_study",
    )
    ap.add_argument(
        "--one-threads",
        type=int,
        default=None,
        help="torch threads of the one-process arm (default: every core)",
    )
    args, record = parse(ap, argv, "study")
    profile = args.profile or ("tiny" if args.quick else "mini")
    steps = args.steps or (4 if args.quick else 6)
    rounds = args.rounds or (1 if args.quick else 4)
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    one_threads = args.one_threads or cores
    workers = args.workers
    spec = T.make_spec(profile)
    p = spec.profile
    torch.set_num_threads(one_threads)

    _, _, batches = training_batches(p, steps)
    batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    images = workers * steps * p.batch_size  # per arm and round
    side_s, one_s = [], []
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "batches.pt")
        torch.save(batches, path)
        side = _SideBySide(spec, path, workers, args.threads)
        try:
            cost, n_jobs = study_cost(p)  # while the processes start
            bare_loop(spec, batches[:1])  # warm-up (allocator, kernels)
            side.ready()
            for r in range(rounds):
                for arm in ("side", "one") if r % 2 == 0 else ("one", "side"):
                    if arm == "side":
                        side_s.append(side.round())
                    else:
                        start, end = _train(spec, batches, workers)
                        one_s.append(end - start)
        finally:
            side.close()

    ips_side, ips_one = images / statistics.median(side_s), images / statistics.median(one_s)
    speedup = statistics.median(o / s for o, s in zip(one_s, side_s))
    # The study's jobs, in main-model trainings, at each arm's throughput.
    unit = schedule_images(p, T.comparison_overrides(p)["epochs"])
    hours_side, hours_one = cost * unit / ips_side / 3600, cost * unit / ips_one / 3600
    main_min = schedule_images(p) / ips_one / 60

    print(
        f"\nZF-{profile}: {workers} networks x {steps} steps of {p.batch_size} at "
        f"{p.image_size} px per arm, {p.optimizer}, clip_rms={p.clip_rms}, {p.precision}, "
        f"{cores} cores, median of {rounds} alternating rounds"
    )
    print(f"{'':44s}{'seconds':>10s}{'images/s':>10s}{'speed-up':>10s}")
    print(
        f"{'one process, ' + str(one_threads) + ' threads, networks in turn':44s}"
        f"{statistics.median(one_s):10.2f}{ips_one:10.0f}{1.0:10.3f}"
    )
    print(
        f"{str(workers) + ' processes side by side, ' + str(args.threads) + ' thread(s) each':44s}"
        f"{statistics.median(side_s):10.2f}{ips_side:10.0f}{speedup:10.3f}"
    )
    print(
        "(seconds and images/s are medians, the speed-up the median of per-round ratios; per-round "
        "seconds: side by side "
        + ", ".join(f"{v:.2f}" for v in side_s)
        + "; one process "
        + ", ".join(f"{v:.2f}" for v in one_s)
        + ")"
    )
    print(
        f"the study: {n_jobs} trainings = {cost:.1f} main-model trainings of {unit} images; "
        f"side by side {hours_side:.3g} h, one at a time {hours_one:.3g} h"
    )
    print(
        f"main model ({p.epochs} epochs of {p.n_train // p.batch_size} steps of {p.batch_size}) "
        f"alone in one process: {main_min:.1f} min"
    )
    print(
        "(estimates count training steps only: rendering the scenes, validation and the records' "
        "evaluation excluded)"
    )
    record.finish(
        {
            "speedup_side_by_side": f"{speedup:.3f}",
            "images_per_s_side_by_side": f"{ips_side:.1f}",
            "images_per_s_one_process": f"{ips_one:.1f}",
            "study_hours_side_by_side": f"{hours_side:.3g}",
            "study_hours_one_process": f"{hours_one:.3g}",
            "main_model_minutes": f"{main_min:.1f}",
            "batch_size": f"{p.batch_size}",
            "workers": f"{workers}",
            "threads": f"{args.threads}",
            "profile": profile,
        },
        summary=f"the comparison study's {workers} processes of {args.threads} thread(s) side by "
        f"side against one {one_threads}-thread process training the same networks in turn "
        f"({profile}, {p.precision}, batches of {p.batch_size}): {speedup:.2f}x ({ips_side:.0f} "
        f"against {ips_one:.0f} images/s), so its {n_jobs} trainings ({cost:.0f} main-model "
        f"trainings) take about {hours_side:.1f} h of training steps side by side against "
        f"{hours_one:.1f} h one at a time",
        target=">= 1x one at a time",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
