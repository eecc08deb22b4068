"""How fast the explorer (notebook 12) answers a click, against a naive redraw.

The explorer (:mod:`zfcore.widgets`) is driven through its own widget callbacks by
:func:`zfcore.widgets.scripted_tour`: choosing layers, clicking cells of the activation grid,
asking for the strongest map, switching the projection rule, changing the image. Each step is
timed from the widget event to the last panel redrawn. Target: the 95th percentile under 0.5 s on
ZF-mini after the first draw (which loads the model and mines or loads the top-9).

The baseline is what a notebook written with ``ipywidgets.interact`` and matplotlib does: on every
change, recompute every panel from scratch with the same zfcore functions (forward pass,
deconvnet projection, the top-9 projections and patches; the one-off mining is shared, as it is
done once in both designs) and draw them as one matplotlib figure. It replays the same states the
tour visited, on the first ``--baseline-steps`` of them. Both run torch with one thread.

    python -m benchmarks.explorer              # ZF-mini, 60 steps
    python -m benchmarks.explorer --quick      # tiny profile, a smoke run
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch

from benchmarks._result import parse


def naive_redraw(model, profile, state, mined, dataset) -> float:
    """One redraw the interact + matplotlib way: nothing cached, every panel recomputed and drawn
    as a matplotlib figure; returns the seconds it took."""
    import matplotlib.pyplot as plt

    from zfcore.plotting.explorer import snapshot_figure
    from zfcore.widgets import ExplorerSession

    t0 = time.perf_counter()
    s = ExplorerSession(model, profile, dataset=dataset, mined=mined)  # empty caches
    s.state = state
    fig = snapshot_figure(s.snapshot_panels(occlusion=False))
    fig.savefig(io.BytesIO(), format="png", dpi=80)
    plt.close(fig)
    return time.perf_counter() - t0


def _stats(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return (float(np.median(v)), float(np.percentile(v, 95))) if v.size else (float("nan"),) * 2


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.explorer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--steps", type=int, default=60, help="scripted user actions")
    ap.add_argument(
        "--baseline-steps", type=int, default=15, help="states replayed by the baseline"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny profile, 12 steps")
    args, record = parse(ap, argv, "explorer")
    if args.quick:
        args.profile, args.steps, args.baseline_steps = "tiny", 12, 4

    import matplotlib

    matplotlib.use("Agg")
    from zfcore.profiles import get_profile
    from zfcore.widgets import Explorer, ExplorerSession, scripted_tour

    P = get_profile(args.profile)
    t0 = time.perf_counter()
    session = ExplorerSession.for_profile(P)  # trained model, from the cache
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    app = Explorer(session)  # first draw: mining (or its cache)
    first_s = time.perf_counter() - t0
    tour = scripted_tour(app, steps=args.steps, seed=args.seed)
    failed = args.steps - len(tour.records)  # a step that raised records no time
    if failed:
        print(f"warning: {failed} step(s) failed; last status: {app.status.value}")

    mined = {l: session.mined(l) for l in session.layers}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        naive = [
            naive_redraw(session.model, P, st, mined, session.dataset)
            for st in tour.states[: args.baseline_steps]
        ]
    finally:
        torch.set_num_threads(before)

    ours = tour.seconds()
    kinds = sorted({k for k, _ in tour.records})
    print(
        f"explorer on profile {P.name}: model load {load_s:.2f} s, first draw {first_s:.2f} s, "
        f"{len(ours)} steps"
    )
    print(
        f"{'step':<10} {'n':>3} {'ours median':>12} {'ours p95':>9} {'naive median':>13} "
        f"{'naive p95':>10} {'ratio':>6}"
    )
    for kind in kinds + ["all"]:
        idx = [i for i, (k, _) in enumerate(tour.records) if kind in ("all", k)]
        om, op = _stats(ours[idx])
        nidx = [i for i in idx if i < len(naive)]
        nm, np95 = _stats([naive[i] for i in nidx])
        ratio = nm / om if nidx and om > 0 else float("nan")
        print(
            f"{kind:<10} {len(idx):>3} {om:>12.3f} {op:>9.3f} {nm:>13.3f} {np95:>10.3f} "
            f"{ratio:>6.1f}"
        )
    median_s, p95_s = _stats(ours)
    naive_median, naive_p95 = _stats(naive)
    # the same steps for both (the baseline replays a prefix of the tour)
    same = ours[: len(naive)]
    speedup = float(np.median(np.asarray(naive) / same)) if len(naive) else float("nan")
    met = "yes" if p95_s < 0.5 else "no"
    print(f"target: 95th percentile under 0.5 s after the first draw: {met} ({p95_s:.3f} s)")
    record.finish(
        {
            "p95_s": f"{p95_s:.3f}",
            "first_s": f"{first_s:.2f}",
            "median_s": f"{median_s:.3f}",
            "naive_median_s": f"{naive_median:.3f}",
            "naive_p95_s": f"{naive_p95:.3f}",
            "speedup_vs_naive": f"{speedup:.1f}",
            "steps": f"{len(ours)}",
            "load_s": f"{load_s:.2f}",
            "profile": P.name,
            "target_met": met,
        },
        summary=f"redraw p95 {p95_s:.2f} s (median {median_s:.2f} s) over {len(ours)} scripted "
        f"clicks on ZF-{P.name}, {speedup:.1f}x faster than redrawing every panel with "
        f"matplotlib (median over the {len(naive)} states both replayed); first draw "
        f"{first_s:.1f} s",
        target="p95 < 0.5 s",
        failure=f"{failed} of {args.steps} explorer step(s) failed" if failed else None,
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
