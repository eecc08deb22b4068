"""Batched deconvnet projections (section 2.1) against a loop, Captum and a same-work pass.

Work: 9 x 64 projections of layer 5 on ZF-mini (the top-9 activations of 64 feature maps, each on
its own image, at its strongest position), the shape of one Fig. 2 panel set. Compared in the same
run:

* ``ours``: ``zfcore.deconv.project`` with its default chunking (``deconv.CHUNK_SIZE`` requests
  per chunk on the CPU);
* ``loop``: the same requests one at a time through ``project`` (a Python loop);
* ``captum``: Captum's ``Deconvolution`` on the same batch with per-example targets, on the model
  with its normalisation layers replaced by ``nn.Identity`` (Captum cannot pass them through), in
  chunks of 4 ... 256 or all requests per call: its best chunking counts. Ours runs on that same
  model for this comparison, and the outputs are compared (times the unit's activation, which the
  deconvnet keeps);
* ``bound``: the same computation as autograd does it: a bare forward pass to layer 5 plus one
  backward pass (input gradient) over the same batch, in the same chunks as ``project``, with the
  normalisation layers *passed through* on the way back as the deconvnet does (section 2.1). On
  the model without normalisation layers it is the plain forward+backward. (Differentiating
  through LRN exactly is more work than a projection does, so that pass is shown for reference
  only.)

``--sweep`` also times ``project`` at several chunk sizes (how ``deconv.CHUNK_SIZE`` is chosen).
Every method is warmed up once, then they run interleaved, best of ``--repeats``, so drifting load
on a shared machine hits them alike.

Ends with ``RESULT deconv speedup_vs_loop=... speedup_vs_captum=... max_rel_diff_captum=...
overhead_vs_same_work_bound=... overhead_vs_same_work_bound_no_lrn=... chunk_size=...
captum_best_chunk=... proj_per_s_no_lrn=... captum_proj_per_s=...
chunked_equals_unchunked=...`` (targets: speedup_vs_captum >= 1.2, overhead_vs_same_work_bound
<= 1.25, chunked_equals_unchunked=1: chunking changes no bit of the result).

    python -m benchmarks.deconv [--quick] [--threads 1] [--sweep]
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
from torch import nn

from benchmarks._result import parse
from zfcore.deconv import CHUNK_SIZE, NORMALISATION, layer_activations, project, requests
from zfcore.models import zfnet
from zfcore.profiles import get_profile

#: Captum's requests per ``attribute`` call tried (and all of them at once): its best counts.
CAPTUM_CHUNKS = (4, 8, 16, 32, 64, 256)
#: ``project``'s chunk sizes timed by ``--sweep``.
SWEEP_CHUNKS = (4, 8, 12, 16, 24, 32, 64)


def best_times(fns: dict, repeats: int) -> dict:
    """Best wall time of each function: each is called once to warm up, then all run
    interleaved ``repeats`` times."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


class _PassBackward(torch.autograd.Function):
    """The module's forward; its backward hands the signal through unchanged (the deconvnet's
    treatment of normalisation layers)."""

    @staticmethod
    def forward(ctx, x, module):
        return module(x)

    @staticmethod
    def backward(ctx, g):
        return g, None


class PassNorm(nn.Module):
    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return _PassBackward.apply(x, self.module)


def pass_normalisation(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose normalisation layers run forward as usual and pass the gradient
    through on the way back."""
    out = copy.deepcopy(model)
    for name, m in list(out.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, NORMALISATION):
                setattr(m, child_name, PassNorm(child))
    return out


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
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="9 x 4 projections, one repeat")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--batch-size",
        type=int,
        default=CHUNK_SIZE,
        help="requests per chunk (ours and bound; default: project's own, deconv.CHUNK_SIZE)",
    )
    ap.add_argument("--sweep", action="store_true", help="also time project at other chunk sizes")
    args, record = parse(ap, argv, "deconv")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    p = get_profile(args.profile)
    n_maps, k = (4, 9) if args.quick else (64, 9)
    repeats = 1 if args.quick else args.repeats
    bs = args.batch_size

    model = zfnet(**p.model_kwargs()).eval()
    x, req = build_work(model, n_maps, k, p.image_size)
    n = len(req)
    cut = [name for name, _ in model.features.named_children()].index("relu5") + 1

    # --- the bound: one bare forward + backward over the same batch, in the same chunks -------
    def bound(net):
        for idx in torch.split(torch.arange(n), bs):
            xr = x[req.image[idx]].requires_grad_(True)
            a = net(xr)
            g = torch.zeros_like(a)
            g[torch.arange(len(idx)), req.channel[idx], req.y[idx], req.x[idx]] = 1.0
            torch.autograd.grad(a, xr, g)

    passed = pass_normalisation(model).features[:cut]  # LRN passed through, as project does
    exact = model.features[:cut]  # LRN differentiated exactly (more work)

    # --- the model without normalisation layers (Captum's and the no-LRN comparison) ----------
    from captum.attr import Deconvolution

    plain = zfnet(**p.model_kwargs()).eval()
    plain.load_state_dict(model.state_dict())
    plain.features.norm1 = nn.Identity()
    plain.features.norm2 = nn.Identity()
    trunc = nn.Sequential(*list(plain.features.children())[:cut], nn.Flatten()).eval()
    with torch.no_grad():
        a = trunc(x)
    c, h, w = plain.features[:cut](x[:1]).shape[1:]
    flat = req.channel * h * w + req.y * w + req.x
    unit = a[torch.arange(n), flat].view(-1, 1, 1, 1)
    deconv = Deconvolution(trunc)

    def captum(chunk):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.cat(
                [
                    deconv.attribute(x[req.image[idx]], target=flat[idx].tolist())
                    for idx in torch.split(torch.arange(n), chunk)
                ]
            )

    def loop():
        for r in range(n):
            project(model, x, "layer5", req.select([r]))

    chunks = sorted({min(cs, n) for cs in CAPTUM_CHUNKS + (n,)})
    sweep = sorted({min(cs, n) for cs in SWEEP_CHUNKS + (bs, n)}) if args.sweep else []
    arms = {
        "ours": lambda: project(model, x, "layer5", req, batch_size=bs),
        "loop": loop,
        "bound": lambda: bound(passed),
        "bound_exact_lrn": lambda: bound(exact),
        "ours_plain": lambda: project(plain, x, "layer5", req, batch_size=bs),
        "bound_plain": lambda: bound(plain.features[:cut]),
        **{f"captum_{cs}": (lambda cs=cs: captum(cs)) for cs in chunks},
        **{
            f"sweep_{cs}": (lambda cs=cs: project(plain, x, "layer5", req, batch_size=cs))
            for cs in sweep
        },
    }
    t = best_times(arms, repeats)
    best_chunk = min(chunks, key=lambda cs: t[f"captum_{cs}"])
    t_captum = t[f"captum_{best_chunk}"]
    theirs = captum(best_chunk) * unit
    ours_plain = project(plain, x, "layer5", req, batch_size=bs).pixels
    rel = float((ours_plain - theirs).abs().max() / theirs.abs().max())
    whole = project(plain, x, "layer5", req, batch_size=n).pixels
    same_bits = int(torch.equal(ours_plain, whole))

    rows_out = [
        ("zfcore project (batched)", t["ours"]),
        ("python loop of project", t["loop"]),
        ("bound: fwd+bwd, LRN passed (same work)", t["bound"]),
        ("fwd+bwd, LRN differentiated (more)", t["bound_exact_lrn"]),
        ("zfcore project, no LRN", t["ours_plain"]),
        *[(f"captum Deconvolution, no LRN, {cs}/call", t[f"captum_{cs}"]) for cs in chunks],
        ("bound: fwd+bwd, no LRN (same work)", t["bound_plain"]),
        *[(f"zfcore project, no LRN, {cs}/chunk", t[f"sweep_{cs}"]) for cs in sweep],
    ]
    print(
        f"{n_maps} x {k} = {n} projections of layer5, profile {p.name} "
        f"({p.image_size} px, width {p.width}), {args.threads} thread(s); every method warmed up, "
        f"best of {repeats}"
    )
    print(f"{'method':42s} {'seconds':>9s} {'proj/s':>9s}")
    for name, secs in rows_out:
        print(f"{name:42s} {secs:9.3f} {n / secs:9.1f}")
    if sweep:
        fastest = min(sweep, key=lambda cs: t[f"sweep_{cs}"])
        print(f"sweep: fastest chunk {fastest} per chunk; project's default is {CHUNK_SIZE}")
    speedup_loop = t["loop"] / t["ours"]
    speedup_captum = t_captum / t["ours_plain"]
    overhead = t["ours"] / t["bound"]
    overhead_plain = t["ours_plain"] / t["bound_plain"]
    print(
        f"speedup vs loop {speedup_loop:.2f}x; vs captum (best chunking: {best_chunk} per call) "
        f"{speedup_captum:.2f}x (target >= 1.2); overhead vs the same-work bound {overhead:.2f}x "
        f"(target <= 1.25; {overhead_plain:.2f}x on the model without LRN; "
        f"{t['ours'] / t['bound_exact_lrn']:.2f}x of a pass that differentiates LRN, which is not "
        f"a bound); max rel diff vs captum {rel:.1e}; {bs} per chunk and all {n} at once "
        f"{'agree bit for bit' if same_bits else 'DIFFER'}"
    )
    record.finish(
        {
            "speedup_vs_loop": f"{speedup_loop:.2f}",
            "speedup_vs_captum": f"{speedup_captum:.2f}",
            "max_rel_diff_captum": f"{rel:.1e}",
            "overhead_vs_same_work_bound": f"{overhead:.2f}",
            "overhead_vs_same_work_bound_no_lrn": f"{overhead_plain:.2f}",
            "chunk_size": f"{bs}",
            "captum_best_chunk": f"{best_chunk}",
            "proj_per_s_no_lrn": f"{n / t['ours_plain']:.1f}",
            "captum_proj_per_s": f"{n / t_captum:.1f}",
            "chunked_equals_unchunked": f"{same_bits}",
        },
        summary=f"{p.name}, layer 5, {n} projections, {args.threads} thread(s): `project` in "
        f"chunks of {bs} at {speedup_captum:.2f}x Captum's `Deconvolution` at its best chunking "
        f"({best_chunk} per call; same outputs to {rel:.0e}), {speedup_loop:.1f}x a per-request "
        f"loop, {overhead:.2f}x a same-work bound that chunks the same way; chunked output "
        f"{'identical' if same_bits else 'NOT identical'} to unchunked",
        target=">= 1.2x Captum at its best chunking, <= 1.25x the same-work bound",
    )


if __name__ == "__main__":
    main()
