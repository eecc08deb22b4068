"""Forward-pass throughput of each profile's ZF network, beside torchvision's AlexNet.

Both networks see the same batches at the profile's input size in the same run; the ratio is
what to read (this machine is shared and noisy). Ends with
``RESULT forward <profile>_images_per_s=... <profile>_ratio_vs_alexnet=...``.

    python -m benchmarks.forward [--quick] [--profiles tiny mini imagenet]
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision.models import alexnet as tv_alexnet

from benchmarks._result import parse
from zfcore.models import zfnet
from zfcore.profiles import get_profile


@torch.inference_mode()
def images_per_second(model, x, repeats):
    model.eval()
    model(x)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        best = min(best, time.perf_counter() - t0)
    return x.shape[0] / best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small batches, one repeat")
    ap.add_argument("--profiles", nargs="+", default=["tiny", "mini", "imagenet"])
    ap.add_argument("--threads", type=int, default=2)
    args, record = parse(ap, argv, "forward")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    repeats = 1 if args.quick else 5
    print(
        f"{'profile':10s} {'input':>6s} {'batch':>6s} {'ZF img/s':>10s} {'AlexNet img/s':>14s} "
        f"{'ratio':>7s}"
    )
    result = {}
    for name in args.profiles:
        p = get_profile(name)
        batch = 8 if args.quick else (64 if p.image_size <= 128 else 16)
        x = torch.randn(batch, 3, p.image_size, p.image_size)
        ours = images_per_second(zfnet(**p.model_kwargs()), x, repeats)
        peer = images_per_second(tv_alexnet(weights=None, num_classes=p.num_classes), x, repeats)
        print(
            f"{name:10s} {p.image_size:6d} {batch:6d} {ours:10.0f} {peer:14.0f} {ours / peer:7.2f}"
        )
        result[f"{name}_images_per_s"] = f"{ours:.0f}"
        result[f"{name}_ratio_vs_alexnet"] = f"{ours / peer:.2f}"
    record.finish(
        result,
        summary="forward throughput (images/s), ZF layout against torchvision's AlexNet at the "
        f"same input ({args.threads} threads): "
        + "; ".join(
            f"{name} {result[f'{name}_images_per_s']} images/s, "
            f"{result[f'{name}_ratio_vs_alexnet']}x AlexNet's"
            for name in args.profiles
        ),
        target="none (a reference)",
    )


if __name__ == "__main__":
    main()
