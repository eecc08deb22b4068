"""Multi-layer feature extraction (section 5, Table 7): all layers in one pass vs one pass each.

Work: layers 1-7 of ZF-mini (112 px, half width) for N images held in memory, pooled to 6x6 where
needed, exactly what ``11_feature_analysis`` extracts. Compared in the same run, interleaved,
best of ``--repeats``:

* ``all_one_pass``: ``zfcore.features.extract_features`` with all seven layers (ours);
* ``deepest_alone``: the same call with ``layer7`` only (the cost floor: layer 7 needs the whole
  network);
* ``each_own_pass``: seven calls, one layer each (what a per-layer loop costs; each pass stops
  at its layer);
* ``torchvision_fx``: torchvision's ``create_feature_extractor`` returning all seven layers from
  one traced pass, pooled and stored the same way (the peer).

Peak memory: each method once in a fresh interpreter, after the model and images are set up: the
resident-set high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) above the
resident size before the method, on Linux; elsewhere the growth of ``ru_maxrss``.

Ends with ``RESULT features overhead_vs_deepest=... images_per_s=... peak_mb=...
speedup_vs_each_layer=... ratio_vs_torchvision_fx=...`` (target: overhead_vs_deepest <= 1.3).

    python -m benchmarks.features [--quick] [--images 512] [--threads 1]
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks._result import parse
from zfcore.features import LAYERS, extract_features, pool_map
from zfcore.models import zfnet
from zfcore.profiles import get_profile


def _rss_kb(field: str) -> int | None:
    try:
        m = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
        return int(m.group(1)) if m else None
    except OSError:
        return None


def peak_mb(fn) -> float:
    """Peak resident memory added while ``fn`` runs, in MiB (call it in a fresh process, so
    memory freed by earlier work and kept by the allocator does not hide the peak)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _rss_kb("VmRSS")
        fn()
        return (_rss_kb("VmHWM") - before) / 1024
    except (OSError, TypeError):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def peak_in_subprocess(method: str, args) -> float:
    """Run this script with ``--peak-of method`` in a fresh interpreter; it prints one number."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.features",
        "--peak-of",
        method,
        "--images",
        str(args.images),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
    ]
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=root).stdout
    return float(out.strip().splitlines()[-1])


def fx_extract(extractor, x, batch_size, side=6):
    """The peer: torchvision's traced multi-output extractor, pooled and stored like ours."""
    out = {l: [] for l in LAYERS}
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            feats = extractor(x[i : i + batch_size])
            for l in LAYERS:
                out[l].append(pool_map(feats[l], side))
    return {l: torch.cat(v) for l, v in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 48 images, 1 repeat, peak memory measured in this process",
    )
    ap.add_argument("--images", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--peak-of", default=None, help=argparse.SUPPRESS
    )  # internal: one method's peak
    args, record = parse(ap, argv, "features")
    if args.quick:
        args.images, args.repeats = min(args.images, 48), 1
    torch.set_num_threads(args.threads)
    P = get_profile("mini")
    torch.manual_seed(0)
    model = zfnet(**P.model_kwargs()).eval()
    x = torch.randn(args.images, 3, P.image_size, P.image_size)
    y = torch.arange(args.images) % 8
    data = (x, y)
    bs = args.batch_size

    from torchvision.models.feature_extraction import create_feature_extractor

    extractor = create_feature_extractor(
        model, return_nodes={model.layer_names[l]: l for l in LAYERS}
    ).eval()

    methods = {
        "all_one_pass": lambda: extract_features(
            model, data, LAYERS, batch_size=bs, progress=False
        ),
        "deepest_alone": lambda: extract_features(
            model, data, ["layer7"], batch_size=bs, progress=False
        ),
        "each_own_pass": lambda: [
            extract_features(model, data, [l], batch_size=bs, progress=False) for l in LAYERS
        ],
        "torchvision_fx": lambda: fx_extract(extractor, x, bs),
    }
    if args.peak_of:
        print(f"{peak_mb(methods[args.peak_of]):.2f}")
        return 0
    # the outputs agree (the peer and ours compute the same features)
    ours = methods["all_one_pass"]()
    peer = methods["torchvision_fx"]()
    max_diff = max(float((ours[l] - peer[l]).abs().max()) for l in LAYERS)

    best = {k: float("inf") for k in methods}
    for _ in range(args.repeats):
        for k, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    # a smoke run measures in this process (allocator reuse makes that an underestimate)
    peaks = {
        k: peak_mb(fn) if args.quick else peak_in_subprocess(k, args) for k, fn in methods.items()
    }
    stored_mb = sum(v.numel() * 4 for v in ours.layers.values()) / 2**20

    print(
        f"ZF-mini ({P.image_size} px), {args.images} images, batch {bs}, {args.threads} "
        f"thread(s), best of {args.repeats}; stored features {stored_mb:.1f} MiB; "
        f"max |ours - fx| = {max_diff:.2e}"
    )
    print(f"{'method':16s} {'seconds':>9s} {'images/s':>10s} {'x deepest':>10s} {'peak MiB':>9s}")
    for k in methods:
        print(
            f"{k:16s} {best[k]:9.3f} {args.images / best[k]:10.1f} "
            f"{best[k] / best['deepest_alone']:10.2f} {peaks[k]:9.1f}"
        )
    overhead = best["all_one_pass"] / best["deepest_alone"]
    print(
        f"target: all layers in one pass <= 1.3x the deepest layer alone: "
        f"{'met' if overhead <= 1.3 else 'missed'} ({overhead:.2f}x)"
    )
    each = best["each_own_pass"] / best["all_one_pass"]
    fx = best["all_one_pass"] / best["torchvision_fx"]
    record.finish(
        {
            "overhead_vs_deepest": f"{overhead:.3f}",
            "images_per_s": f"{args.images / best['all_one_pass']:.1f}",
            "peak_mb": f"{peaks['all_one_pass']:.1f}",
            "speedup_vs_each_layer": f"{each:.2f}",
            "ratio_vs_torchvision_fx": f"{fx:.3f}",
        },
        summary=f"layers 1-7 of ZF-mini in one pass: {overhead:.2f}x the time of the deepest layer "
        f"alone, {each:.1f}x faster than one pass per layer, {fx:.2f}x the time of torchvision's "
        f"feature extractor (`create_feature_extractor`) on the same layers; "
        f"{args.images / best['all_one_pass']:.0f} images/s, {args.threads} thread(s)",
        target="<= 1.3x the deepest layer alone",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
