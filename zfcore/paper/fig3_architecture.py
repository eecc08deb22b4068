"""Section 3, Fig. 3: the architecture, measured from the network rather than restated.

Fig. 3 draws the network as 224 > 110 > 55 > 26 > 13 > 13 > 13 > 6 (the spatial side after
each stage for a 224x224 input) with a 7x7 stride-2 first layer where Krizhevsky et al. (2012)
used 11x11 stride 4. :func:`zfcore.summary.layer_table` measures every layer with forward hooks;
this module compares those measurements with the figure and names the numbers notebook 01
records.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..summary import LayerRow
from .headline import MISSING, Numbers

__all__ = [
    "FIG3_SIZES",
    "measured_sizes",
    "fig3_numbers",
    "profile_numbers",
    "sizes_text",
    "claim_text",
]

#: Fig. 3: the spatial side after each stage for a 224x224 input.
FIG3_SIZES: dict[str, int] = {
    "conv1": 110,
    "pool1": 55,
    "conv2": 26,
    "pool2": 13,
    "conv3": 13,
    "conv4": 13,
    "conv5": 13,
    "pool5": 6,
}


def _side(rows: Sequence[LayerRow], name: str) -> int:
    return next(r.out_shape[-1] for r in rows if r.name == name)


def measured_sizes(rows: Sequence[LayerRow]) -> dict[str, int]:
    """The measured spatial side of each stage Fig. 3 prints, in the figure's order."""
    by_name = {r.name: r.out_shape[-1] for r in rows}
    return {name: by_name[name] for name in FIG3_SIZES}


def fig3_numbers(zf_rows: Sequence[LayerRow], kr_rows: Sequence[LayerRow]) -> dict:
    """Notebook 01's record of the full-size layouts: whether every size matches Fig. 3, the
    sizes, both networks' parameter counts and their first layers' output sides."""
    sizes = measured_sizes(zf_rows)
    return {
        "sizes_match_fig3": sizes == FIG3_SIZES,
        "zfnet_spatial_sizes": list(sizes.values()),
        "zfnet_parameters": sum(r.params for r in zf_rows),
        "krizhevsky_parameters": sum(r.params for r in kr_rows),
        "krizhevsky_layer1_side": _side(kr_rows, "conv1"),
        "zfnet_layer1_side": sizes["conv1"],
    }


def profile_numbers(rows: Sequence[LayerRow]) -> dict:
    """The profile's own (scaled) network: its parameters and its layer-5 side."""
    return {
        "profile_parameters": sum(r.params for r in rows),
        "profile_layer5_side": _side(rows, "conv5"),
    }


def sizes_text(zf_rows: Sequence[LayerRow]) -> str:
    """Fig. 3's sizes beside the measured ones, one stage per line."""
    sizes = measured_sizes(zf_rows)
    lines = [f"{'stage':8s} {'Fig. 3':>7s} {'measured':>9s}"]
    lines += [f"{n:8s} {FIG3_SIZES[n]:7d} {sizes[n]:9d}" for n in FIG3_SIZES]
    return "\n".join(lines)


def claim_text(numbers: dict) -> str:
    """The notebook's closing sentence: whether Fig. 3's sizes hold, with the parameters."""
    held = numbers["sizes_match_fig3"]
    k, z = numbers["krizhevsky_layer1_side"], numbers["zfnet_layer1_side"]
    return (
        f"Fig. 3's sizes {'hold' if held else 'do NOT hold'} for zfcore's ZFNet: "
        f"{' > '.join(str(s) for s in numbers['zfnet_spatial_sizes'])} "
        f"({numbers['zfnet_parameters'] / 1e6:.1f} M parameters; Krizhevsky's layout "
        f"{numbers['krizhevsky_parameters'] / 1e6:.1f} M, its layer 1 is {k}x{k} against ZF's "
        f"{z}x{z})."
    )


def _sizes_headline(n: Numbers) -> str:
    v = n.get("zfnet_spatial_sizes")
    return MISSING if v is None else " > ".join(str(s) for s in v)


#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 01_architecture records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "Fig. 3: 224 > 110 > 55 > 26 > 13 > 13 > 13 > 6",
        lambda n: (
            f"sizes measured by hooks: {_sizes_headline(n)} "
            f"({n.word('sizes_match_fig3', 'as in Fig. 3', 'not as in Fig. 3')}); "
            f"{n.f('zfnet_parameters', '.2f', scale=1e-6, unit=' M')} parameters"
        ),
    ),
]
