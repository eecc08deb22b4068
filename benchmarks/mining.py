"""Top-9 mining of layers 1-5 (Fig. 2) against plain inference over the same batches.

``zfcore.mining.mine_topk`` records the 9 strongest activations (value, image, position) of every
feature map of layers 1-5 in one streaming pass that stops after layer 5. Its cost is compared
with plain inference over the same work: the forward pass up to layer 5
(``zfcore.models.forward_layers(model, x, ["layer5"])`` under ``torch.inference_mode``, which
stops there too), over the same pre-rendered batches of ZF-mini, in the same run. The whole
network's forward pass (``model(x)``, layers 6-8 included) is shown for reference. Every method
is warmed up once, then they run interleaved, best of ``--repeats``. Ends with
``RESULT mining overhead_vs_inference=... images_per_s=...`` (target: overhead <= 1.3), the
overhead measured against inference to layer 5.

    python -m benchmarks.mining [--quick] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._result import parse
from zfcore.mining import mine_topk
from zfcore.models import forward_layers, zfnet
from zfcore.profiles import get_profile


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="2 small batches, one repeat")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args, record = parse(ap, argv, "mining")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    p = get_profile(args.profile)
    n_batches, bs = (2, 16) if args.quick else (args.batches, p.batch_size)
    repeats = 1 if args.quick else args.repeats
    model = zfnet(**p.model_kwargs()).eval()
    batches = [torch.randn(bs, 3, p.image_size, p.image_size) for _ in range(n_batches)]
    n = n_batches * bs

    def inference_to_layer5():
        with torch.inference_mode():
            for x in batches:
                forward_layers(model, x, ["layer5"])

    def inference_full():
        with torch.inference_mode():
            for x in batches:
                model(x)

    def mining():
        return mine_topk(model, batches, k=9, progress=False)

    arms = {"inference": inference_to_layer5, "mining": mining, "inference_full": inference_full}
    for fn in arms.values():  # warm-up
        fn()
    best = {name: float("inf") for name in arms}
    for _ in range(repeats):
        for name, fn in arms.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    res = mining()
    maps = sum(lt.maps for lt in res.layers.values())
    print(
        f"{n} images ({n_batches} x {bs}), profile {p.name} ({p.image_size} px, width "
        f"{p.width}), {args.threads} thread(s); top-9 of {maps} feature maps in "
        f"{len(res.layers)} layers"
    )
    print(f"{'method':40s} {'seconds':>9s} {'images/s':>9s}")
    for name, label in (
        ("inference", "inference to layer 5 (same work)"),
        ("mining", "mine_topk, layers 1-5, k=9"),
        ("inference_full", "inference, whole network (reference)"),
    ):
        print(f"{label:40s} {best[name]:9.3f} {n / best[name]:9.1f}")
    overhead = best["mining"] / best["inference"]
    print(
        f"overhead vs inference to layer 5 {overhead:.2f}x (target <= 1.3); "
        f"{best['mining'] / best['inference_full']:.2f}x the whole network's forward pass"
    )
    whole = best["mining"] / best["inference_full"]
    record.finish(
        {"overhead_vs_inference": f"{overhead:.2f}", "images_per_s": f"{n / best['mining']:.1f}"},
        summary=f"top-9 of every map of layers 1-5 ({maps} maps) in one streaming pass over {n} "
        f"images: {overhead:.2f}x plain inference up to layer 5 ({whole:.2f}x the whole network's "
        f"forward pass), {n / best['mining']:.0f} images/s, {args.threads} thread(s), "
        f"profile {p.name}",
        target="<= 1.3x inference to layer 5",
    )


if __name__ == "__main__":
    main()
