"""Batched deconvnet projections (section 2.1) against a loop, Captum and the compute bound.

Work: 9 x 64 projections of layer 5 on ZF-mini (the top-9 activations of 64 feature maps, each on
its own image, at its strongest position), the shape of one Fig. 2 panel set. Compared in the same
run:

* ``loop``: the same requests one at a time through ``zfcore.deconv.project`` (a Python loop);
* ``captum``: Captum's ``Deconvolution`` on the same batch with per-example targets, on the model
  with its normalisation layers replaced by ``nn.Identity`` (Captum cannot pass them through);
  ours runs on that same model for this comparison, and the outputs are compared (times the
  unit's activation, which the deconvnet keeps);
* ``bound``: one bare forward pass to layer 5 plus one backward pass (input gradient) over the
  same batch, in the same chunks of 64 requests that ``project`` uses: a projection cannot cost
  less.

All timed methods run interleaved, best of ``--repeats``, so drifting load on a shared machine
hits them alike (the loop, the slowest, runs once).

Ends with ``RESULT deconv speedup_vs_loop=... speedup_vs_captum=... max_rel_diff_captum=...
overhead_vs_bound=...`` (targets: speedup_vs_captum >= 1, overhead_vs_bound <= 1.25).

    python -m benchmarks.deconv [--quick] [--threads 1]
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch import nn

from zfcore.deconv import layer_activations, project, requests
from zfcore.models import zfnet
from zfcore.profiles import get_profile


def best_times(fns: dict, repeats: int) -> dict:
    """Best wall time of each function, running them interleaved ``repeats`` times."""
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def build_work(model, n_maps: int, k: int, size: int, seed: int = 0):
    """``n_maps * k`` requests: map ``c``'s request ``j`` is on its own image, at the map's
    strongest position there (like the top-9 of Fig. 2)."""
    g = torch.Generator().manual_seed(seed)
    n = n_maps * k
    x = torch.randn(n, 3, size, size, generator=g)
    a = layer_activations(model, x, ["layer5"])["layer5"]
    channel = torch.arange(n_maps).repeat_interleave(k)
    maps = a[torch.arange(n), channel].flatten(1)
    pos = maps.argmax(1)
    w = a.shape[-1]
    return x, requests(torch.arange(n), channel, pos // w, pos % w)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="9 x 4 projections, one repeat")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64, help="requests per chunk (ours and bound)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    p = get_profile(args.profile)
    n_maps, k = (4, 9) if args.quick else (64, 9)
    repeats = 1 if args.quick else args.repeats
    bs = args.batch_size

    model = zfnet(**p.model_kwargs()).eval()
    x, req = build_work(model, n_maps, k, p.image_size)
    n = len(req)

    # --- a Python loop (the real model, LRN passed through) -----------------------------------
    t0 = time.perf_counter()
    for r in range(n):
        project(model, x, "layer5", req.select([r]))
    t_loop = time.perf_counter() - t0

    # --- the bound: one bare forward + backward over the same batch ---------------------------
    cut = [n for n, _ in model.features.named_children()].index("relu5") + 1
    trunk = model.features[:cut]

    def bound(net=trunk):
        for idx in torch.split(torch.arange(n), bs):
            xr = x[req.image[idx]].requires_grad_(True)
            a = net(xr)
            g = torch.zeros_like(a)
            g[torch.arange(len(idx)), req.channel[idx], req.y[idx], req.x[idx]] = 1.0
            torch.autograd.grad(a, xr, g)

    # --- Captum Deconvolution on the model without normalisation layers -----------------------
    from captum.attr import Deconvolution
    plain = zfnet(**p.model_kwargs()).eval()
    plain.load_state_dict(model.state_dict())
    plain.features.norm1 = nn.Identity()
    plain.features.norm2 = nn.Identity()
    trunc = nn.Sequential(*list(plain.features.children())[:cut], nn.Flatten()).eval()
    with torch.no_grad():
        a = trunc(x)
    c, h, w = plain.features[:cut](x[:1]).shape[1:]
    flat = (req.channel * h * w + req.y * w + req.x)
    unit = a[torch.arange(n), flat].view(-1, 1, 1, 1)
    deconv = Deconvolution(trunc)

    def captum():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return deconv.attribute(x[req.image], target=flat.tolist())

    t = best_times({"ours": lambda: project(model, x, "layer5", req, batch_size=bs),
                    "bound": bound, "captum": captum,
                    "bound_plain": lambda: bound(plain.features[:cut]),
                    "ours_plain": lambda: project(plain, x, "layer5", req, batch_size=bs)},
                   repeats)
    t_ours, t_bound, t_captum, t_ours_plain = t["ours"], t["bound"], t["captum"], t["ours_plain"]
    t_bound_plain = t["bound_plain"]
    theirs = captum() * unit
    ours_plain = project(plain, x, "layer5", req).pixels
    rel = float((ours_plain - theirs).abs().max() / theirs.abs().max())

    rows_out = [("zfcore project (batched)", t_ours), ("python loop of project", t_loop),
                ("bare forward+backward (bound)", t_bound),
                ("zfcore project, no LRN", t_ours_plain), ("captum Deconvolution, no LRN", t_captum),
                ("bare forward+backward, no LRN", t_bound_plain)]
    print(f"{n_maps} x {k} = {n} projections of layer5, profile {p.name} "
          f"({p.image_size} px, width {p.width}), {args.threads} thread(s)")
    print(f"{'method':32s} {'seconds':>9s} {'proj/s':>9s}")
    for name, secs in rows_out:
        print(f"{name:32s} {secs:9.3f} {n / secs:9.1f}")
    speedup_loop = t_loop / t_ours
    speedup_captum = t_captum / t_ours_plain
    overhead = t_ours / t_bound
    print(f"speedup vs loop {speedup_loop:.2f}x; vs captum {speedup_captum:.2f}x (target >= 1); "
          f"overhead vs bound {overhead:.2f}x (target <= 1.25; {t_ours_plain / t_bound_plain:.2f}x "
          f"on the model without LRN, whose exact backward is costly); max rel diff vs captum "
          f"{rel:.1e}")
    print(f"RESULT deconv speedup_vs_loop={speedup_loop:.2f} speedup_vs_captum={speedup_captum:.2f} "
          f"max_rel_diff_captum={rel:.1e} overhead_vs_bound={overhead:.2f}")


if __name__ == "__main__":
    main()
