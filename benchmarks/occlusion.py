"""Occlusion sensitivity (Fig. 7) against Captum's ``Occlusion``, on the same work.

Two settings, each on one image with the same model, square, stride, fill (the data set's mean,
0 in normalised input) and target class:

* ``zf-mini``: the ``mini`` profile's ZF network at 112 px, a 16 px square, stride 4 (625
  positions). The trained model is used if it is already cached, otherwise the same layout with
  random (He-initialised) weights: timing does not depend on the weights.
* ``alexnet``: torchvision's AlexNet (``weights=None``) at 224 px on scikit-image's cat, a 16 px
  square, stride 8 (729 positions).

Compared in the same run, interleaved, best of ``--repeats``:

* ``ours``: ``zfcore.occlusion.occlude`` (batched, incremental: only the square's cone is
  recomputed, after Krypton);
* ``ours_full``: the same with ``incremental=False`` (batched full passes), for reference;
* ``captum_ppe=N``: ``captum.attr.Occlusion(...).attribute(perturbations_per_eval=N)``; the
  fastest N is "tuned", N=1 is Captum's default (timed on ``zf-mini``).

Correctness: our p(correct class) map, spread to pixels as Captum does
(:func:`zfcore.occlusion.pixel_attribution`), must equal Captum's attribution (max abs diff).
``flop_bound`` is the multiply-add ratio of a full pass to the exact cone, the speed-up bound of
exact incremental inference (:func:`zfcore.incremental.incremental_flop_bound`).

Targets: zf-mini >= 2x tuned Captum; alexnet >= 1.5x. Ends with
``RESULT occlusion speedup_vs_captum=... speedup_vs_captum_default=... max_abs_diff=...
speedup_alexnet=... flop_bound_alexnet=...``.

    python -m benchmarks.occlusion [--quick] [--threads 1] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch

from zfcore.incremental import incremental_flop_bound
from zfcore.models import alexnet, he_init_, zfnet
from zfcore.occlusion import occlude, pixel_attribution, window_positions
from zfcore.profiles import get_profile


def best_times(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Best wall time and last output of each function, run interleaved ``repeats`` times."""
    best, out = {k: float("inf") for k in fns}, {}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            out[k] = fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best, out


def zf_mini_setting():
    """The mini model (trained if cached, never trained here) and a test scene."""
    p = get_profile("mini")
    ready = p.cache_dir / "MINI_MODEL_READY"
    model, which = None, "random weights (mini model not cached yet)"
    if ready.is_file():
        try:
            from zfcore.train import trained_model
            model, which = trained_model("mini", progress=False), "trained mini model"
        except Exception as e:  # noqa: BLE001 - fall back to timing on random weights
            which = f"random weights (trained model unavailable: {type(e).__name__})"
    if model is None:
        model = he_init_(zfnet(**p.model_kwargs())).eval()
    try:
        from zfcore.data import get_dataset
        ds = get_dataset(p, "test")
        image, label = ds[0]
    except Exception:  # noqa: BLE001 - the data module is optional for timing
        image, label = torch.randn(3, p.image_size, p.image_size), 0
    return model.eval(), image, int(label), which


def alexnet_setting():
    model = he_init_(alexnet(pretrained=False)).eval()
    try:
        from zfcore.data.images import sample_photos
        image = sample_photos("imagenet", ["cat"]).images[0]
        what = "scikit-image's cat"
    except Exception:  # noqa: BLE001
        image, what = torch.randn(3, 224, 224), "a random image"
    with torch.no_grad():
        target = int(model(image[None]).argmax())
    return model, image, target, what


def captum_runner(model, image, target, window, stride, ppe):
    from captum.attr import Occlusion
    occ = Occlusion(lambda x: torch.softmax(model(x), 1))

    def run():
        with torch.no_grad():
            return occ.attribute(image[None], sliding_window_shapes=(3, window, window),
                                 strides=(3, stride, stride), baselines=0.0, target=target,
                                 perturbations_per_eval=ppe)[0, 0]
    return run


def bench_setting(name, model, image, target, window, stride, ppes, default_ppe, repeats,
                  batch_size):
    S = image.shape[-1]
    if (S - window) % stride:
        raise SystemExit(f"{name}: stride must divide size - window for Captum's grid to match")
    fns = {"ours": lambda: occlude(model, image, target, window=window, stride=stride,
                                   fill="mean", batch_size=batch_size),
           "ours_full": lambda: occlude(model, image, target, window=window, stride=stride,
                                        fill="mean", batch_size=batch_size, incremental=False)}
    for ppe in ppes:
        fns[f"captum_ppe={ppe}"] = captum_runner(model, image, target, window, stride, ppe)
    if default_ppe and 1 not in ppes:
        fns["captum_ppe=1"] = captum_runner(model, image, target, window, stride, 1)
    times, outs = best_times(fns, repeats)
    captum_keys = [k for k in times if k.startswith("captum_ppe=") and int(k.split("=")[1]) in ppes]
    tuned = min(captum_keys, key=times.get)
    ours_attr = pixel_attribution(outs["ours"])
    diffs = {k: float((outs[k] - ours_attr).abs().max()) for k in times if k.startswith("captum")}
    full_diff = float((outs["ours_full"].prob_target - outs["ours"].prob_target).abs().max())
    pos = window_positions(S, window, stride)
    rows, cols = pos.repeat_interleave(len(pos)), pos.repeat(len(pos))
    flops = incremental_flop_bound(model, S, rows, cols, window)
    print(f"\n== {name}: {S} px, window {window}, stride {stride}, {len(rows)} positions")
    print(f"{'method':18s} {'time s':>8s} {'ours faster by':>15s} {'max |diff| vs ours':>19s}")
    for k in sorted(times, key=times.get):
        d = diffs.get(k, full_diff if k == "ours_full" else 0.0)
        print(f"{k:18s} {times[k]:8.3f} {times[k] / times['ours']:14.2f}x {d:19.2e}"
              + ("   <- tuned Captum" if k == tuned else ""))
    print(f"FLOP bound of exact incremental inference: {flops.bound:.2f}x "
          f"(full {flops.full / 1e6:.1f} M multiply-adds per position, exact cone "
          f"{flops.exact_cone / 1e6:.1f} M)")
    return dict(times=times, tuned=tuned, diffs=diffs, flops=flops,
                attr_scale=float(outs[tuned].abs().max()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: coarser strides, fewer Captum settings, one repeat")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128, help="positions per batch (ours)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    repeats = 1 if args.quick else args.repeats

    model, image, label, which = zf_mini_setting()
    print(f"zf-mini: {which}; threads={args.threads}, best of {repeats}")
    zf = bench_setting("zf-mini", model, image, label, 16, 8 if args.quick else 4,
                       [64] if args.quick else [8, 16, 32, 64, 128], True, repeats,
                       args.batch_size)
    amodel, aimage, atarget, what = alexnet_setting()
    print(f"\nalexnet: torchvision AlexNet (weights=None, He init) on {what}")
    ax = bench_setting("alexnet", amodel, aimage, atarget, 56 if args.quick else 16,
                       56 if args.quick else 8,
                       [64] if args.quick else [8, 32, 128], False, 1 if args.quick else 2,
                       args.batch_size)

    speedup = zf["times"][zf["tuned"]] / zf["times"]["ours"]
    speedup_default = zf["times"]["captum_ppe=1"] / zf["times"]["ours"]
    speedup_alex = ax["times"][ax["tuned"]] / ax["times"]["ours"]
    max_diff = max(max(zf["diffs"].values()), max(ax["diffs"].values()))
    print(f"\ntargets: zf-mini >= 2x tuned Captum: {speedup:.2f}x "
          f"({'met' if speedup >= 2 else 'MISSED'}); alexnet >= 1.5x: {speedup_alex:.2f}x "
          f"({'met' if speedup_alex >= 1.5 else 'MISSED'}; FLOP bound {ax['flops'].bound:.2f}x); "
          f"maps equal to 1e-4: {'yes' if max_diff <= 1e-4 else 'NO'} (max {max_diff:.1e}; "
          f"largest attribution {max(zf['attr_scale'], ax['attr_scale']):.2e})")
    print(f"RESULT occlusion speedup_vs_captum={speedup:.2f} "
          f"speedup_vs_captum_default={speedup_default:.2f} max_abs_diff={max_diff:.2e} "
          f"speedup_alexnet={speedup_alex:.2f} flop_bound_alexnet={ax['flops'].bound:.2f}")


if __name__ == "__main__":
    main()
