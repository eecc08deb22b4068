"""Memory of top-9 mining and feature extraction over a large folder of photos.

Mining (Fig. 2's top-9 per feature map) and feature extraction (section 5's probes) must keep
memory bounded however many images a user's folder holds. This writes N procedural scenes as
JPEG files into a folder, for N = 2,000 and 20,000, and measures the peak resident memory
(each run in a fresh fork, ``VmHWM`` growth) of

* ours: ``mine_topk`` / ``extract_features`` streaming the folder through
  ``zfcore.data.images.PhotoStream`` (one batch of images in memory at a time);
* the baseline: load the whole folder into one tensor (``load_folder``), then mine it: what
  one does without a streaming loader; its memory grows with N.

Each measurement first runs the same work on 64 images in the fork (unmeasured), so the
numbers are what the folder's size adds, not torch's code pages or first-call buffers. Ours
should add about nothing from 2,000 to 20,000 images (only the feature matrix, N x D floats,
must grow; its size is reported); the baseline adds the images themselves.

    python -m benchmarks.memory            # 2,000 vs 20,000 images (a few minutes)
    python -m benchmarks.memory --quick    # 200 vs 2,000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torch.utils.data import DataLoader  # noqa: E402

from benchmarks._result import parse  # noqa: E402
from tests.helpers.memory import available, peak_growth_mb, write_scene_photos  # noqa: E402
from zfcore import models  # noqa: E402
from zfcore.data.images import PhotoStream, load_folder  # noqa: E402
from zfcore.features import extract_features  # noqa: E402
from zfcore.mining import mine_topk  # noqa: E402
from zfcore.profiles import get_profile  # noqa: E402


def _mine_stream(model, folder, P):
    stream = PhotoStream(folder, P, batch_size=64, progress=False)
    r = mine_topk(model, stream, progress=False)
    return {"images": r.n_images, "skipped": len(stream.skipped)}


def _features_stream(model, folder, P):
    stream = PhotoStream(folder, P, batch_size=64, progress=False)
    f = extract_features(
        model, DataLoader(stream, batch_size=None), layers=("layer5", "layer7"), progress=False
    )
    result_mb = sum(t.numel() * t.element_size() for t in f.layers.values()) / 2**20
    return {"images": len(f), "result_mb": result_mb}


def _mine_in_memory(model, folder, P):
    b = load_folder(folder, P, max_images=10**7, progress=False)
    r = mine_topk(model, b.images, progress=False)
    return {"images": r.n_images, "tensor_mb": b.images.numel() * 4 / 2**20}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="200 vs 2,000 images")
    ap.add_argument("--profile", default="tiny", help="image size and model width (default tiny)")
    ap.add_argument(
        "--folder",
        type=Path,
        default=None,
        help="where to write the photos (default: a temporary folder)",
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the in-memory baseline")
    args, record = parse(ap, argv, "memory")
    if not available():
        print("needs Linux (fork and /proc/self/clear_refs)")
        return 1
    torch.set_num_threads(1)
    P = get_profile(args.profile)
    small, large = (200, 2000) if args.quick else (2000, 20000)
    model = models.zfnet(**P.model_kwargs()).eval()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.folder or Path(tmp)
        folders = {
            n: write_scene_photos(base / f"photos_{n}", n, P.image_size, progress=True)
            for n in (small, large)
        }
        warm = write_scene_photos(base / "warmup", 64, P.image_size)
        rows = []
        works = [("mine_stream", _mine_stream), ("features_stream", _features_stream)]
        if not args.no_baseline:
            works.append(("mine_in_memory", _mine_in_memory))
        for name, work in works:
            for n, folder in folders.items():
                mb, secs, out = peak_growth_mb(
                    lambda: work(model, folder, P), warmup=lambda: work(model, warm, P)
                )
                assert out["images"] == n, (name, n, out)
                rows.append((name, n, mb, secs, out))
                print(
                    f"  {name:16s} {n:6d} images: peak +{mb:7.1f} MB  {secs:6.1f} s  {out}",
                    flush=True,
                )
    peak = {(r[0], r[1]): r[2] for r in rows}
    more = {(r[0], r[1]): r[4] for r in rows}
    print(f"\n{'work':16s} {'images':>7s} {'peak MB':>9s} {'images/s':>9s}")
    for name, n, mb, secs, _ in rows:
        print(f"{name:16s} {n:7d} {mb:9.1f} {n / secs:9.0f}")

    def extra(name):  # what the 10x larger folder added to the peak
        return peak[(name, large)] - peak[(name, small)]

    res = [
        f"images={large} vs={small} image_size={P.image_size}",
        f"mine_peak_mb_{small}={peak[('mine_stream', small)]:.1f}",
        f"mine_peak_mb_{large}={peak[('mine_stream', large)]:.1f}",
        f"mine_extra_mb={extra('mine_stream'):.1f}",
        f"features_peak_mb_{small}={peak[('features_stream', small)]:.1f}",
        f"features_peak_mb_{large}={peak[('features_stream', large)]:.1f}",
        f"features_extra_mb={extra('features_stream'):.1f}",
        f"features_result_mb_{large}={more[('features_stream', large)]['result_mb']:.1f}",
    ]
    if not args.no_baseline:
        res += [
            f"baseline_peak_mb_{small}={peak[('mine_in_memory', small)]:.1f}",
            f"baseline_peak_mb_{large}={peak[('mine_in_memory', large)]:.1f}",
            f"baseline_extra_mb={extra('mine_in_memory'):.1f}",
        ]
    summary = (
        f"mining {large:,} scene photos from a folder (profile {P.name}, {P.image_size} px) adds "
        f"{extra('mine_stream'):.0f} MB of peak memory over {small:,}; extracting their "
        f"features adds {extra('features_stream'):.0f} MB (the features themselves "
        f"{more[('features_stream', large)]['result_mb']:.0f} MB)"
    )
    if not args.no_baseline:
        summary += f"; loading the folder into memory first adds {extra('mine_in_memory'):.0f} MB"
    record.finish(
        dict(kv.split("=") for kv in " ".join(res).split()),
        summary=summary,
        target="flat: peak memory independent of the folder's size",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
