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
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

import torch

from ..models import TABLE3_VARIANTS
from .spec import ARCHS, make_spec


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m zfcore.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--arch", default="zfnet", choices=ARCHS)
    ap.add_argument("--variant", default="zf", choices=sorted(TABLE3_VARIANTS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a profile field or trainer option (values are read as JSON, "
                         "else as text), e.g. --set epochs=10 --set optimizer=sgd "
                         "--set init=paper --set clip_rms=null --set layer_lr='{\"layer1\": 0.1}'")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.set:
        if "=" not in item:
            ap.error(f"--set takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k] = _parse_value(v)
    spec = make_spec(args.profile, args.arch, args.variant, **overrides)
    if spec.profile.threads:
        torch.set_num_threads(spec.profile.threads)
    import torch.distributed as dist
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if spec.profile.device.startswith("cuda") and torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    from . import train, training_run   # the package's names (what tests and callers patch)
    try:
        if world > 1:
            run = train(spec, progress=not args.no_progress)
        else:
            run = training_run(args.profile, args.arch, args.variant,
                               progress=not args.no_progress, **overrides)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        f = run.final
        print(f"{run.directory}: {len(run.history)} epochs, val top-1 error {f.val_top1_error:.2f}% "
              f"(accuracy {f.val_accuracy:.2f}%), top-5 {f.val_top5_error:.2f}%, "
              f"{run.train_seconds:.0f} s of training")
    return 0
