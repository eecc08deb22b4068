"""Explain your own photos with the paper's three tools, from the command line or one call.

    python -m zfcore.explain my_cat.jpg my_car.png --model zfnet --out explained/
    python -m zfcore.explain my_cat.jpg --model resnet18 --weights random --out /tmp/x
    python -m zfcore.explain --folder my_photos/ --model alexnet --out explained/

For each photo (Zeiler & Fergus, 2014), under ``OUT/<photo name>/``:

* ``projection.png``: the strongest activation of layer 5 projected to pixels by the deconvnet
  (section 2.1, Fig. 1), beside its receptive field in the photo (the panels of Fig. 2);
* ``occlusion.png``: Fig. 7's panels: the photo, the strongest layer-5 map's total activation
  with a grey square at each position, that map's projection, p(predicted class) and the most
  probable class for each position (section 4.2; "correct" is the network's own prediction on
  the whole photo, since a photo has no label);
* ``invariance.png``: Fig. 5's curves: the photo translated, scaled and rotated, the distance of
  layer 1's and the top layer's features from the original, and p(predicted class) (section 4.4);
* ``numbers.json``: every number behind the three figures.

``--folder DIR`` mines the top-9 of layer-5 maps over a folder of photos in one streaming pass
(:func:`zfcore.mining.mine_topk`, bounded memory) and draws Fig. 2 for a spread of maps:
``OUT/folder_top9.png`` and ``OUT/folder_top9.json``.

Models: ``zfnet`` (the paper's Fig. 3 network), ``alexnet``, ``vgg16``, ``resnet18`` with
``--weights imagenet`` (pretrained; the file must be on disk, or set ZFCORE_DOWNLOAD=1) or
``--weights random`` (untrained, nothing downloaded), or a saved zfcore model ``FILE.pt``
(:func:`zfcore.zoo.get_model`). ResNet-18 has no ZF-style layers: "layer5" is its last residual
stage (7x7x512), and its top layer is layer 5 too (see :func:`zfcore.models.resnet18`).

In Python: :func:`explain_photo` and :func:`explain_folder` return the numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .cache import atomic_savefig, atomic_write_json
from .data import PhotoStream, denormalize, load_image
from .data.images import ImageLoadError
from .deconv import layer_activations, project, requests
from .errors import ZFCoreError
from .invariance import TRANSFORMS, transform_scenes
from .mining import TopImages, mine_topk, pick_maps, top_panels, top_requests
from .models import eval_mode, hidden_layers, layer_key, layer_names
from .occlusion import default_window, occlude
from .paper.fig5_invariance import invariance_curves, layer_growth, mean_true_probability
from .plotting.deconv import plot_top9
from .plotting.explain import unit_projection_figure
from .plotting.invariance import invariance_figure
from .plotting.occlusion import occlusion_figure
from .pretrained import MissingWeightsError
from .profiles import PROFILES, Profile, get_profile
from .receptive import receptive_field
from .report import provenance
from .study import plain
from .zoo import ZooError, class_names_for, get_model

__all__ = [
    "explain_photo",
    "explain_photos",
    "explain_folder",
    "ExplainError",
    "resolve_model",
    "main",
]


class ExplainError(ZFCoreError, ValueError):
    """A bad argument of :func:`explain_photo` / :func:`explain_folder`; the message says the
    fix."""


@dataclass
class _Net:
    model: nn.Module
    profile: Profile
    name: str
    class_names: list


def _profile_for(model: nn.Module, profile: "str | Profile | None") -> Profile:
    """The profile whose images (size and normalisation) the model takes."""
    if profile is not None:
        return get_profile(profile)

    n = len(class_names_for(model))
    size = getattr(model, "input_size", 224)
    if n == 1000:
        return get_profile("imagenet")
    for p in PROFILES.values():
        if p.image_size == size and p.num_classes == n and p.name != "imagenet":
            return p
    return get_profile("imagenet", image_size=size, num_classes=max(1, n))


def resolve_model(
    model: "str | os.PathLike | nn.Module" = "zfnet",
    weights: str = "imagenet",
    profile: "str | Profile | None" = None,
) -> _Net:
    """The network (by name, file or module, :func:`zfcore.zoo.get_model`), in eval mode, with
    the profile its inputs are made for and its class names."""

    if isinstance(model, nn.Module):
        # the caller's module, in the caller's mode: every step below runs it under eval_mode
        m, name = model, getattr(model, "zoo_name", type(model).__name__)
        layer_names(m)  # a clear error if it has no layer naming
    else:
        m = get_model(model, weights=weights)
        name = m.zoo_name
    P = _profile_for(m, profile)
    return _Net(m, P, name, class_names_for(m, P))


def _method(model: nn.Module) -> str:
    # The explicit deconvnet walks a chain of layers; a residual network needs the gradient form.
    return "explicit" if hasattr(model, "features") else "autograd"


def _field(model: nn.Module, layer: str):
    """The analytic receptive field, for chain networks (a residual one has no single field)."""
    if not hasattr(model, "features"):
        return None

    return receptive_field(model, layer)


def _top_layer(model: nn.Module) -> str:

    names = layer_names(model)
    return next(l for l in ("layer7", "layer6", "layer5") if l in names)


def _load(path, P: Profile) -> tuple[torch.Tensor, str]:

    p = Path(path)
    if not p.exists():
        raise ExplainError(f"{p}: no such photo (working folder {os.getcwd()}); check the path")
    if p.is_dir():
        raise ExplainError(f"{p} is a folder: pass photos one by one, or the folder with --folder")
    return load_image(p, P), p.name


def explain_photo(
    path: "str | os.PathLike",
    model: "str | os.PathLike | nn.Module" = "zfnet",
    *,
    weights: str = "imagenet",
    out: "str | os.PathLike" = "explained",
    profile: "str | Profile | None" = None,
    layer: str = "layer5",
    window: "int | None" = None,
    stride: "int | None" = None,
    occlusion: str = "exact",
    progress: bool = True,
    _net: "_Net | None" = None,
) -> dict:
    """Figs. 1, 7 and 5 for one photo, written to ``out/<photo name>/`` (see the module
    docstring); returns the numbers also written to ``numbers.json``.

    ``model``: a name (``zfnet``, ``alexnet``, ``vgg16``, ``resnet18``), a ``.pt`` file or a
    module with ``layer_names``; ``weights``: ``imagenet`` or ``random``. ``layer``: the layer
    whose strongest unit is projected and tracked under occlusion. ``window`` / ``stride``: the
    grey square's side and step in pixels (default: a quarter and a 28th of the image side).
    ``occlusion``: ``"exact"`` or ``"fast"`` (each layer's change in bfloat16, positions whose
    p(class) may have moved by 0.01 rechecked in float32: :data:`zfcore.occlusion.PRESETS`).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    net = _net or resolve_model(model, weights, profile)
    m, P = net.model, net.profile
    layer = layer_key(layer, hidden_layers(m))
    x, name = _load(path, P)
    x = x[None]
    S = P.image_size
    dw, ds = default_window(S)
    window, stride = window or dw, stride or ds
    folder = Path(out) / Path(name).stem
    t0 = time.perf_counter()
    steps = ["projection", "occlusion", "invariance"]

    bar = tqdm(steps, desc=name, unit="figure", disable=not progress, leave=False)
    image01 = denormalize(x, P)[0].clamp(0, 1)

    # --- Fig. 1: the strongest activation of the layer, projected ---------------------------
    bar.set_postfix_str("projection")
    a = layer_activations(m, x, [layer])[layer][0]
    if a.dim() != 3:
        raise ExplainError(
            f"{layer} of {net.name} is not a convolutional map; choose layer1 ... layer5"
        )
    channel, y, xx = (int(v) for v in (a == a.max()).nonzero()[0])
    value = float(a[channel, y, xx])
    proj = project(m, x, layer, requests(0, channel, y, xx), method=_method(m))
    rf = _field(m, layer)
    box = rf.box(y, xx, (S, S)) if rf is not None else None
    with eval_mode(m), torch.no_grad():
        probs = torch.softmax(m(x), 1)[0]
    top5 = torch.topk(probs, min(5, len(probs)))
    pred = int(top5.indices[0])

    def label(c: int) -> str:
        return net.class_names[c] if c < len(net.class_names) else f"class {c}"

    fig = unit_projection_figure(
        image01,
        proj.pixels[0],
        f"{name}: {layer} map {channel} at ({y}, {xx}), activation {value:.2f}; {net.name}",
        box,
    )
    atomic_savefig(fig, folder / "projection.png", dpi=110)
    plt.close(fig)
    bar.update(1)

    # --- Fig. 7: occlusion ------------------------------------------------------------------
    bar.set_postfix_str("occlusion")
    res = occlude(
        m,
        x[0],
        pred,
        window=window,
        stride=stride,
        fill="mean",
        layer=layer,
        incremental=hasattr(m, "features"),
        mode=occlusion,
    )
    fmap = a[res.feature]
    fy, fx = divmod(int(fmap.argmax()), fmap.shape[1])
    oproj = project(m, x, layer, requests(0, res.feature, fy, fx), method=_method(m))
    fig = occlusion_figure(
        image01[None],
        [res],
        net.class_names,
        projections=oproj.pixels,
        titles=[name],
        projection_boxes=[rf.box(fy, fx, S)] if rf is not None else None,
    )
    atomic_savefig(fig, folder / "occlusion.png", dpi=110)
    plt.close(fig)
    bar.update(1)
    cy, cx = res.most_damaging()

    # --- Fig. 5: invariance -----------------------------------------------------------------
    bar.set_postfix_str("invariance")
    top = _top_layer(m)
    boxes = torch.tensor([[S / 4, S / 4, 3 * S / 4, 3 * S / 4]])
    curves = {
        k: invariance_curves(m, x, [pred], boxes, kind=k, layers=("layer1", top))
        for k in TRANSFORMS
    }
    strips = {}
    for k, cur in curves.items():
        amounts = cur.amounts[torch.linspace(0, len(cur.amounts) - 1, 5).round().long()]
        strips[k] = [
            denormalize(transform_scenes(x, boxes, kind=k, amount=float(v)).images, P)[0]
            for v in amounts
        ]
    fig = invariance_figure(curves, strips, net.class_names, layers=("layer1", top))
    atomic_savefig(fig, folder / "invariance.png", dpi=110)
    plt.close(fig)
    bar.update(1)
    bar.close()

    numbers = {
        "photo": str(path),
        "photo_name": name,
        "model": net.name,
        "profile": P.name,
        "image_size": S,
        "layer": layer,
        "predicted_class": label(pred),
        "predicted_index": pred,
        "top5": [
            {"class": label(int(c)), "index": int(c), "probability": float(p)}
            for p, c in zip(top5.values, top5.indices)
        ],
        "strongest_unit": {
            "map": channel,
            "y": y,
            "x": xx,
            "activation": value,
            "receptive_field_box": list(box) if box is not None else None,
            "receptive_field_px": rf.size if rf is not None else None,
        },
        "occlusion": {
            "window_px": window,
            "stride_px": stride,
            "target_class": label(pred),
            "mode": res.mode,
            "precision": res.precision,
            "exact": res.exact,
            "rechecked_in_float32": (
                None if res.rechecked is None else float(res.rechecked.double().mean())
            ),
            "p_target_unoccluded": res.prob_target_clean,
            "p_target_min": float(res.prob_target.min()),
            "most_damaging_centre_yx": [float(cy), float(cx)],
            "tracked_map": res.feature,
            "map_total_unoccluded": res.feature_total_clean,
            "map_total_min": float(res.feature_total.min()),
            "top_class_changes_at_fraction_of_positions": float(
                (res.top_class != res.clean_top_class).float().mean()
            ),
        },
        "invariance": {
            k: {
                "amounts": [float(v) for v in c.amounts],
                "distance_layer1": c.distances["layer1"][0].tolist(),
                f"distance_{top}": c.distances[top][0].tolist(),
                "p_predicted": c.prob_true[0].tolist(),
                "growth_layer1": layer_growth(c, "layer1"),
                f"growth_{top}": layer_growth(c, top),
                "mean_p_predicted": mean_true_probability(c),
            }
            for k, c in curves.items()
        },
        "figures": ["projection.png", "occlusion.png", "invariance.png"],
        "seconds": time.perf_counter() - t0,
    }
    numbers["provenance"] = provenance(P, {net.name: m}, numbers["seconds"])
    atomic_write_json(folder / "numbers.json", plain(numbers))
    return numbers


def explain_photos(
    paths: Sequence,
    model="zfnet",
    *,
    weights: str = "imagenet",
    out="explained",
    profile=None,
    layer: str = "layer5",
    window=None,
    stride=None,
    occlusion: str = "exact",
    progress: bool = True,
) -> list[dict]:
    """:func:`explain_photo` for each of ``paths`` with one model (built once)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    net = resolve_model(model, weights, profile)

    return [
        explain_photo(
            p,
            net.model,
            out=out,
            layer=layer,
            window=window,
            stride=stride,
            occlusion=occlusion,
            progress=progress,
            _net=net,
        )
        for p in tqdm(list(paths), desc="photos", unit="photo", disable=not progress)
    ]


def explain_folder(
    folder: "str | os.PathLike",
    model="zfnet",
    *,
    weights: str = "imagenet",
    out="explained",
    profile=None,
    layer: str = "layer5",
    maps: int = 6,
    k: int = 9,
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    """Fig. 2 over a folder of photos: the top-``k`` activations of every map of ``layer`` mined
    in one streaming pass (:class:`zfcore.data.PhotoStream`, bounded memory), then ``maps`` maps
    spread over the range of their strongest activation projected with the deconvnet beside
    their image patches. Writes ``out/folder_top9.png`` and ``out/folder_top9.json``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    net = resolve_model(model, weights, profile)
    m, P = net.model, net.profile
    if not Path(folder).is_dir():
        raise ExplainError(f"{folder}: no such folder; --folder takes a folder of photos")
    stream = PhotoStream(folder, P, batch_size=batch_size)
    top = mine_topk(m, stream, k=k, layers=[layer], batch_size=batch_size, progress=progress)
    paths = list(stream.paths)
    if len(paths) < k:
        raise ExplainError(
            f"{folder} has {len(paths)} readable photo(s); the top-{k} needs at "
            f"least {k}"
            + (f" (skipped: {', '.join(map(str, stream.skipped[:3]))})" if stream.skipped else "")
        )
    chosen = pick_maps(top, layer, maps)
    ids = top_requests(top, layer, chosen)[0].tolist()
    images = torch.stack([load_image(paths[i], P) for i in ids])
    tp = top_panels(
        m,
        top,
        layer,
        chosen,
        TopImages(ids, images, denormalize(images, P).clamp(0, 1)),
        crop=_field(m, layer) is not None,
        method=_method(m),
        progress=progress,
    )
    panels = tp.panels(chosen)
    record = [
        {
            "map": int(c),
            "photos": [paths[int(i)].name for i in tp.entries.images[tp.select(c)]],
            "activations": [float(v) for v in tp.entries.activation[tp.select(c)]],
        }
        for c in chosen
    ]
    fig = plot_top9(
        layer,
        panels,
        title=f"{net.name}: top-{k} of {layer} maps over "
        f"{len(paths)} photos of {Path(folder).name} (projections left, patches right)",
    )
    atomic_savefig(fig, Path(out) / "folder_top9.png", dpi=110)
    plt.close(fig)
    numbers = {
        "folder": str(folder),
        "model": net.name,
        "layer": layer,
        "photos": len(paths),
        "skipped": [str(s) for s in stream.skipped],
        "k": k,
        "maps": record,
    }
    numbers["provenance"] = provenance(P, {net.name: m})
    atomic_write_json(Path(out) / "folder_top9.json", plain(numbers))
    return numbers


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m zfcore.explain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("photos", nargs="*", help="photos to explain (JPEG, PNG, WebP, ...)")
    ap.add_argument(
        "--model",
        default="zfnet",
        help="zfnet | alexnet | vgg16 | resnet18 | FILE.pt (default: zfnet)",
    )
    ap.add_argument(
        "--weights",
        default="imagenet",
        choices=["imagenet", "random"],
        help="pretrained ImageNet weights or untrained (default: imagenet)",
    )
    ap.add_argument("--out", default="explained", help="output folder (default: explained)")
    ap.add_argument(
        "--folder", help="also mine the top-9 of layer-5 maps over this folder (Fig. 2)"
    )
    ap.add_argument(
        "--layer", default="layer5", help="layer of the unit to explain (default: layer5)"
    )
    ap.add_argument("--window", type=int, help="occluding square's side in pixels")
    ap.add_argument("--stride", type=int, help="occluding square's step in pixels")
    ap.add_argument(
        "--occlusion",
        default="exact",
        choices=["exact", "fast"],
        help="exact, or fast: each layer's change in bfloat16, rechecked in float32 "
        "where p(class) may have moved by 0.01 (default: exact)",
    )
    ap.add_argument(
        "--profile",
        choices=list(PROFILES),
        help="profile of a FILE.pt model's images (default: from its size and classes)",
    )
    args = ap.parse_args(argv)
    if not args.photos and not args.folder:
        ap.error("give at least one photo or --folder DIR")

    try:
        explained = (
            explain_photos(
                args.photos,
                args.model,
                weights=args.weights,
                out=args.out,
                profile=args.profile,
                layer=args.layer,
                window=args.window,
                stride=args.stride,
                occlusion=args.occlusion,
            )
            if args.photos
            else []
        )
        for n in explained:
            o = n["occlusion"]
            print(
                f"{n['photo_name']}: {n['predicted_class']} (p {n['top5'][0]['probability']:.2f}); "
                f"{n['layer']} map {n['strongest_unit']['map']}; the grey square lowers "
                f"p({o['target_class']}) from {o['p_target_unoccluded']:.2f} to "
                f"{o['p_target_min']:.2f}; {n['seconds']:.1f} s -> "
                f"{Path(args.out) / Path(n['photo_name']).stem}"
            )
        if args.folder:
            f = explain_folder(
                args.folder,
                args.model,
                weights=args.weights,
                out=args.out,
                profile=args.profile,
                layer=args.layer,
            )
            print(
                f"{args.folder}: top-{f['k']} of {len(f['maps'])} {f['layer']} maps over "
                f"{f['photos']} photos -> {Path(args.out) / 'folder_top9.png'}"
            )
    except (ExplainError, ZooError, ImageLoadError, MissingWeightsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
