"""Train a profile's network as section 3 trains it, from the command line.

One process, or one per GPU through torchrun (``--set`` overrides any profile field or trainer
option; the trained network lands in the same cache entry ``zfcore.train.trained_model`` reads)::

    python -m zfcore.train --profile mini
    python -m zfcore.train --profile mini --set optimizer=sgd --set lr=0.01 --set init=paper
    torchrun --standalone --nproc_per_node=8 -m zfcore.train --profile imagenet
    torchrun --nnodes=4 --nproc_per_node=8 --rdzv_id=zf --rdzv_backend=c10d \\
             --rdzv_endpoint=HEAD_NODE:29500 -m zfcore.train --profile imagenet

``--profile``'s ``batch_size`` is the global batch (the paper's 128), split evenly over the
processes. Only rank 0 writes the cache entry; on several nodes point ``ZFCORE_CACHE`` at a shared
file system (or collect the entry from rank 0's node).

At the end it prints the network's fingerprint and whether it equals the shipped weights' of the
same configuration (:mod:`zfcore.train.shipped`). ``--retrain`` trains from scratch even when the
cache holds the run: into a fresh folder ``<cache>/retrain/<id>/`` (the cache itself is left as
it is; point ``ZFCORE_CACHE`` there to use the retrained network)::

    python -m zfcore.train --profile mini --retrain

``--export`` then writes the run's final network to ``zfcore/weights/<name>.safetensors`` (in a
checkout; ``--export DIR`` elsewhere), the file :func:`zfcore.train.trained_model` ships with.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..models import TABLE3_VARIANTS, model_fingerprint
from . import shipped
from .loop import train
from .runs import training_run
from .spec import ARCHS, make_spec


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m zfcore.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--arch", default="zfnet", choices=ARCHS)
    ap.add_argument("--variant", default="zf", choices=sorted(TABLE3_VARIANTS))
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile field or trainer option (values are read as JSON, "
        "else as text), e.g. --set epochs=10 --set optimizer=sgd "
        "--set init=paper --set clip_rms=null --set layer_lr='{\"layer1\": 0.1}'",
    )
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument(
        "--retrain",
        action="store_true",
        help="train from scratch into a fresh cache folder even when the cache holds the "
        "run, and say whether it reproduced the shipped weights' fingerprint",
    )
    ap.add_argument(
        "--export",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="write the final network to zfcore/weights/<name>.safetensors (or DIR) with "
        "its configuration hash and fingerprint: the shipped weights",
    )
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.set:
        if "=" not in item:
            ap.error(f"--set takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k] = _parse_value(v)
    if args.retrain:
        run_id = os.environ.get("TORCHELASTIC_RUN_ID") or time.strftime("%Y%m%d-%H%M%S")
        base = make_spec(args.profile, args.arch, args.variant, **overrides).profile.cache_dir
        overrides["cache_dir"] = str(Path(base) / "retrain" / run_id)
    spec = make_spec(args.profile, args.arch, args.variant, **overrides)
    if spec.profile.threads:
        torch.set_num_threads(spec.profile.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = (
            "nccl"
            if spec.profile.device.startswith("cuda") and torch.cuda.is_available()
            else "gloo"
        )
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    try:
        if world > 1:
            run = train(spec, progress=not args.no_progress)
        else:
            run = training_run(
                args.profile, args.arch, args.variant, progress=not args.no_progress, **overrides
            )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        f = run.final
        print(
            f"{run.directory}: {len(run.history)} epochs, val top-1 error {f.val_top1_error:.2f}% "
            f"(accuracy {f.val_accuracy:.2f}%), top-5 {f.val_top5_error:.2f}%, "
            f"{run.train_seconds:.0f} s of training"
        )
        print(_compare_with_shipped(run))
        if args.retrain:
            cache_dir = spec.profile.cache_dir
            print(f"retrained from scratch; to use this network: ZFCORE_CACHE={cache_dir}")
        if args.export is not None:
            written = shipped.export(run, args.export or None)
            print(f"exported {run.directory} -> {written.path}: {written.describe()}")
    return 0


def _compare_with_shipped(run) -> str:
    """The run's fingerprint, and whether it reproduces the shipped weights of its configuration."""
    got = model_fingerprint(run.model())
    found = shipped.find(run.spec)
    if found is None:
        return f"fingerprint {got} (no shipped weights for this configuration and length)"
    same = "reproduces" if got == found.fingerprint else "does not reproduce"
    return f"fingerprint {got}: {same} the shipped weights {found.path.name} ({found.fingerprint})"
