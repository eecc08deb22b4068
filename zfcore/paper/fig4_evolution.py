"""Section 4.2 of Zeiler & Fergus (2014): Fig. 4, feature evolution during training (notebook 04).

"Fig. 4 visualizes the progression during training of the strongest activation (across all
training examples) within a given feature map projected back to pixel space. [...] The lower
layers of the model can be seen to converge within a few epochs. However, the upper layers only
develop after a considerable number of epochs (40-50), demonstrating the need to let the models
train until fully converged." Notebook 04 trains the profile's main network as section 3 does,
and then:

* the main run: :func:`history_text` and :func:`run_numbers` (errors per epoch, the training
  time, dead maps per layer, the layer-1 filters' low-frequency share);
* the training recipes screened on the same budget (:data:`RECIPES`, :func:`compare_recipes`,
  :func:`recipes_text`, :func:`recipe_numbers`): the paper's SGD recipe as written stays at
  chance for epochs on a 2-core budget, so the small profiles' deviation is chosen by
  measurement (validation error, dead maps, the layer-1 filters' low-frequency share, time);
* Fig. 4 itself (:func:`fig4_projections`): the strongest activation of maps drawn among those
  that fire at the end, at every checkpoint, projected with the deconvnet;
* the reading made a number (:func:`zfcore.evolution.layer_convergence` measures, here
  :func:`depth_verdict`, :func:`convergence_text`, :func:`convergence_numbers`): the rank
  correlation of depth with the epoch from which a map's top-9 settles, on the main run and
  repeated on every seed of the Fig. 3 network (:func:`fig3_seed_runs`,
  :func:`seed_convergence_numbers`), so that its interval includes the seed variance;
* what the reading suggests (:func:`layer_schedules`, :class:`LayerSchedules`): freezing the
  early layers once they settled, or slowing them, against one global rate, each trained with
  several seeds on the complete schedule (the comparison study, :mod:`zfcore.paper.comparisons`),
  decided by hierarchical bootstraps (seeds, then images): does it cost under one point of
  validation accuracy?
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from ..cache import cached
from ..errors import ZFCoreError
from ..evolution import (
    CONV_LAYERS,
    EVOLUTION_VERSION,
    Convergence,
    spearman,
    strongest_projections,
    training_images,
)
from ..health import low_frequency_share
from ..mining import mine_topk
from ..profiles import Profile, get_profile
from ..study import Result
from ..train import (
    TrainRun,
    cached_run,
    compare_throughput,
    comparison_overrides,
    make_spec,
    training_run,
)
from .comparisons import (
    EARLY_LAYERS,
    early_layer_freeze,
    network_arrays,
    network_records,
    study_jobs,
)
from .headline import MISSING, NOT_RECORDED, Numbers, layer_keys
from .verdicts import Verdict, from_interval, hierarchical_bootstrap

__all__ = [
    "Fig4Error",
    "UnknownRecipeError",
    "history_text",
    "run_numbers",
    "RECIPES",
    "RecipeResult",
    "recipe_overrides",
    "profile_recipe",
    "compare_recipes",
    "screening_epochs",
    "comparison_schedule",
    "recipes_text",
    "recipe_numbers",
    "Fig4Projections",
    "fig4_projections",
    "depth_correlation",
    "map_depth_correlation",
    "fig3_seed_runs",
    "depth_verdict",
    "seed_convergence_numbers",
    "convergence_text",
    "convergence_numbers",
    "LayerSchedules",
    "layer_schedules",
    "EARLY_LAYERS",
]


class Fig4Error(ZFCoreError, ValueError):
    """Bad input to notebook 04's studies (an unknown recipe, a schedule, too few layers)."""


class UnknownRecipeError(Fig4Error, KeyError):
    """A recipe name that is not a key of :data:`RECIPES`."""

    def __str__(self) -> str:  # a KeyError's message, without the quotes KeyError adds
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------------------------------------
# The main run
# ---------------------------------------------------------------------------------------------


def history_text(run: TrainRun) -> str:
    """A training run per epoch as printed text (loss, running and eval-mode training error,
    validation top-1 and top-5 error, images/s; the paper reports the running error, section 3),
    the checkpoint epochs (Fig. 4's columns) and the dead-map share per layer at the end."""
    lines = [
        f"{'epoch':>5s} {'train loss':>10s} {'train err':>9s} {'train err (eval)':>16s} "
        f"{'val err':>8s} {'val top-5':>9s} {'img/s':>6s}"
    ]
    for h in run.history:
        lines.append(
            f"{h.epoch:5d} {h.train_loss:10.3f} {h.train_top1_error:8.1f}% "
            f"{h.train_eval_top1_error:15.1f}% {h.val_top1_error:7.1f}% {h.val_top5_error:8.1f}% "
            f"{h.images_per_s:6.0f}"
        )
    lines.append(f"checkpoints kept at epochs {[f'{e:g}' for e in run.checkpoint_epochs]}")
    lines.append(
        "dead maps at the end: "
        + ", ".join(f"{l} {v:.0%}" for l, v in run.final.dead_share.items())
    )
    return "\n".join(lines)


def run_numbers(run: TrainRun) -> dict:
    """The numbers notebook 04 records for the main training run: final validation accuracy and
    top-5 error, eval-mode training error, training time (the training steps, and the per-epoch
    validation with its dead-map count), epochs, learning-rate drops, arithmetic, checkpoint
    epochs, the layer-1 filters' low-frequency share and the share of dead maps per layer at the
    end."""
    f = run.final
    return dict(
        final_val_accuracy=f.val_accuracy,
        final_val_top5_error=f.val_top5_error,
        final_train_eval_top1_error=f.train_eval_top1_error,
        training_seconds=run.train_seconds,
        training_minutes=run.train_seconds / 60,
        epochs=len(run.history),
        validation_seconds=sum(h.val_seconds for h in run.history),
        lr_drop_epochs=list(run.spec.profile.lr_drop_epochs),
        precision=run.spec.profile.precision,
        layer1_low_frequency_share=low_frequency_share(run.model()),
        checkpoint_epochs=run.checkpoint_epochs,
        **{f"dead_map_share_{l}": v for l, v in f.dead_share.items()},
    )


# ---------------------------------------------------------------------------------------------
# Training recipes on the same budget (section 3's recipe and the small profiles' deviations)
# ---------------------------------------------------------------------------------------------


#: Profile overrides of each recipe (every field a recipe could differ in is set, so a recipe
#: means the same on any profile; the profile's ``precision`` and schedule apply to all).
#: ``adam_bias``: Adam with PyTorch's default initialisation, layer 1 started near zero (std
#: 5e-4), and Krizhevsky's remedy against units that never fire (positive hidden biases).
#: ``sgd_warmup``: the paper's SGD with He initialisation and a one-epoch warm-up.
#: ``sgd_paper_layer1``: the paper's SGD with layer 1 initialised at the paper's 1e-2.
#: ``sgd_late_dropout`` keeps the paper's rate but takes batches of 64 (twice the steps for the
#: same compute), starts the logits at He's scale and switches dropout on only from the second
#: epoch, which shortens the loss plateau at the start.
_SGD = dict(optimizer="sgd", lr=1e-2, momentum=0.9, weight_decay=5e-4, init="he", bias_init=None)
RECIPES: dict[str, dict] = {
    "adam_bias": dict(
        optimizer="adam",
        lr=5e-4,
        weight_decay=0.0,
        init="default",
        layer1_init_std=5e-4,
        bias_init=0.1,
        warmup_epochs=0.0,
        dropout_after=0.0,
        logits_init_std=1e-2,
        batch_size=128,
    ),
    "sgd_warmup": dict(
        _SGD,
        layer1_init_std=None,
        logits_init_std=1e-2,
        warmup_epochs=1.0,
        dropout_after=0.0,
        batch_size=128,
    ),
    "sgd_paper_layer1": dict(
        _SGD,
        layer1_init_std=1e-2,
        logits_init_std=1e-2,
        warmup_epochs=0.5,
        dropout_after=0.0,
        batch_size=128,
    ),
    "sgd_late_dropout": dict(
        _SGD,
        layer1_init_std=1e-2,
        logits_init_std=None,
        warmup_epochs=0.25,
        dropout_after=1.0,
        batch_size=64,
    ),
}


def recipe_overrides(name: str) -> dict:
    """The profile overrides of recipe ``name`` (a key of :data:`RECIPES`)."""
    if name not in RECIPES:
        raise UnknownRecipeError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    return dict(RECIPES[name])


def profile_recipe(profile: "str | Profile") -> "str | None":
    """The name of the recipe the profile trains with (its fields equal the recipe's), or None."""
    p = get_profile(profile)
    for name, over in RECIPES.items():
        if all(
            getattr(p, k) == v
            for k, v in over.items()
            if not (k == "momentum" and p.optimizer != "sgd")
        ):
            return name
    return None


@dataclass
class RecipeResult:
    """One recipe's measurements after ``epochs`` epochs."""

    recipe: str
    epochs: int
    val_top1_error: float
    dead_share: Mapping[str, float]
    layer1_low_frequency_share: float
    train_minutes: float

    def row(self) -> dict:
        r = {
            "recipe": self.recipe,
            "epochs": self.epochs,
            "val_top1_error_pct": self.val_top1_error,
            "layer1_low_frequency_share": self.layer1_low_frequency_share,
            "train_minutes": self.train_minutes,
        }
        r.update({f"dead_{k}": v for k, v in self.dead_share.items()})
        return r


def compare_recipes(
    profile: "str | Profile" = "mini",
    recipes=None,
    epochs: int | None = None,
    progress: bool = True,
    train_missing: bool = True,
) -> list[RecipeResult]:
    """Train (or load) each recipe for ``epochs`` (default :func:`screening_epochs`) and measure
    it; with ``train_missing=False`` only the recipes already trained on this machine. The
    profile's own recipe is a prefix of its main training."""
    p = get_profile(profile)
    epochs = epochs or screening_epochs(p)
    out = []
    for name in recipes or RECIPES:
        over = dict(recipe_overrides(name), epochs=epochs)
        run = (
            training_run(p, progress=progress, **over)
            if train_missing
            else cached_run(make_spec(p, **over))
        )
        if run is None:
            continue
        last = run.history[-1]
        out.append(
            RecipeResult(
                name,
                epochs,
                last.val_top1_error,
                dict(last.dead_share),
                low_frequency_share(run.model()),
                sum(h.train_seconds for h in run.history) / 60,
            )
        )
    return out


def screening_epochs(profile: "str | Profile") -> int:
    """The recipes' screening budget: half the profile's epochs (at least one). A screening
    compares how far each recipe gets on the same budget, before the learning-rate drop; it
    picks a recipe, it does not rank architectures (those train on the whole schedule:
    :func:`zfcore.train.comparison_overrides`)."""
    return max(1, round(get_profile(profile).epochs / 2))


def comparison_schedule(profile: "str | Profile", epochs: "int | None" = None) -> dict:
    """The schedule of the comparison trainings: ``{"epochs": epochs}``, or
    :func:`zfcore.train.comparison_overrides` (the profile's whole schedule) when ``epochs`` is
    None."""
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise Fig4Error(f"schedule_epochs must be None or a positive int, got {epochs!r}")
    return comparison_overrides(profile) if epochs is None else {"epochs": epochs}


def recipes_text(results: Sequence[RecipeResult], chosen: "str | None" = None) -> str:
    """The recipe table as printed text: validation error, layer-1 low-frequency share, minutes
    and the dead-map share per layer; ``chosen`` (the profile's recipe) is starred."""
    layers = list(results[0].dead_share)
    lines = [
        f"{'recipe':16s} {'val err':>8s} {'layer-1 low freq':>16s} {'minutes':>8s}  dead maps "
        + " ".join(f"{l[-1]:>5s}" for l in layers)
    ]
    for r in results:
        lines.append(
            f"{r.recipe + (' *' if r.recipe == chosen else ''):16s} {r.val_top1_error:7.1f}% "
            f"{r.layer1_low_frequency_share:16.0%} {r.train_minutes:8.1f}            "
            + " ".join(f"{100 * r.dead_share[l]:4.0f}%" for l in layers)
        )
    return "\n".join(lines)


def recipe_numbers(results: Sequence[RecipeResult], chosen: "str | None" = None) -> dict:
    """The numbers notebook 04 records for the recipe comparison: ``recipe_<name>_<measure>``
    for every measure of :meth:`RecipeResult.row` but the name and the epochs, and
    ``profile_recipe`` (``"custom"`` when the profile matches no recipe)."""
    out = {}
    for r in results:
        out.update(
            {
                f"recipe_{r.recipe}_{k}": v
                for k, v in r.row().items()
                if k not in ("recipe", "epochs")
            }
        )
    out["profile_recipe"] = chosen or "custom"
    return out


# ---------------------------------------------------------------------------------------------
# Fig. 4: the strongest activation of chosen maps at every checkpoint, projected to pixels
# ---------------------------------------------------------------------------------------------


@dataclass
class Fig4Projections(Result):
    """``projections[layer]``: ``(maps, checkpoints, 3, s, s)`` deconvnet projections of each
    chosen map's strongest activation over the mined images, cropped to the layer's receptive
    field; ``patches`` the image patches under them; ``maps[layer]`` the chosen map indices;
    ``activations[layer]`` ``(maps, checkpoints)`` the strongest activation's value."""

    epochs: list[float]
    maps: dict[str, list[int]]
    projections: dict[str, torch.Tensor]
    patches: dict[str, torch.Tensor]
    activations: dict[str, torch.Tensor]
    image_index: dict[str, torch.Tensor] = field(default_factory=dict)
    #: per layer, how many maps fire at the final checkpoint (the shown maps are drawn among
    #: them, at random) and how many the layer has
    alive: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)

    def alive_text(self) -> str:
        """How many maps of each layer fire at the final checkpoint, as a printed sentence."""
        return "maps that fire at the final checkpoint (on the mined images): " + ", ".join(
            f"{l} {self.alive[l]}/{self.total[l]}" for l in self.alive
        )

    def numbers(self) -> dict:
        """``fig4_firing_maps_<layer>``: the maps Fig. 4's rows are drawn among."""
        return {f"fig4_firing_maps_{l}": v for l, v in self.alive.items()}


def fig4_projections(
    run: TrainRun,
    maps_per_layer: int = 3,
    n_images: int = 1000,
    layers: Sequence[str] = CONV_LAYERS,
    seed: int = 0,
    progress: bool = True,
    cache: bool = True,
) -> Fig4Projections:
    """Fig. 4 for ``run``: for ``maps_per_layer`` feature maps of each layer drawn at random among
    those that fire at the final checkpoint (the same maps at every checkpoint), the strongest
    activation over the first ``n_images`` training images, projected to pixel space with the
    deconvnet and cropped to the layer's receptive field
    (:func:`zfcore.evolution.strongest_projections`)."""
    if maps_per_layer < 1:
        raise Fig4Error(f"maps_per_layer must be >= 1, got {maps_per_layer!r}")
    epochs = list(run.checkpoint_epochs)
    n_images = min(int(n_images), run.spec.profile.n_train)

    def build() -> dict:
        images = training_images(run, n_images)
        final = run.model(epochs[-1])
        use = [l for l in layers if l in final.layer_names]
        g = torch.Generator().manual_seed(seed)
        top1 = mine_topk(final, images, k=1, layers=use, batch_size=250, progress=False)
        alive = {l: torch.nonzero(top1[l].values[:, 0] > 0).flatten() for l in use}
        if any(len(a) == 0 for a in alive.values()):
            raise Fig4Error(
                f"no map of {[l for l, a in alive.items() if not len(a)]} fires on the "
                f"{len(images)} mined images at the final checkpoint: the network is dead there"
            )
        maps = {
            l: sorted(a[torch.randperm(len(a), generator=g)[:maps_per_layer]].tolist())
            for l, a in alive.items()
        }
        per_epoch = []
        for e in tqdm(epochs, desc="Fig. 4 checkpoints", unit="ckpt", disable=not progress):
            per_epoch.append(strongest_projections(run.model(e), images, maps))
        out = {
            "epochs": epochs,
            "maps": maps,
            "alive": {l: len(a) for l, a in alive.items()},
            "total": {l: int(top1[l].values.shape[0]) for l in use},
        }
        for key in ("projections", "patches", "activations", "image_index"):
            out[key] = {l: torch.stack([r[key][l] for r in per_epoch], 1) for l in use}
        return out

    config = {
        "version": EVOLUTION_VERSION,
        "kind": "fig4",
        "run": run.spec.key_config(),
        "epochs": epochs,
        "n_images": n_images,
        "maps": maps_per_layer,
        "layers": list(layers),
        "seed": seed,
    }
    raw = cached(run.spec.profile.cache_dir, "evolution", config, build) if cache else build()
    return Fig4Projections(**raw)


# ---------------------------------------------------------------------------------------------
# Section 4.2's reading of Fig. 4 as numbers: per-layer convergence
# ---------------------------------------------------------------------------------------------


def depth_correlation(conv: Convergence, which: str = "topk") -> float:
    """Spearman correlation of layer depth with the layers' convergence epochs (top-9 or weights;
    > 0: deeper = later)."""
    epochs = conv.topk_converged if which == "topk" else conv.weight_converged
    layers = [l for l in epochs if l.startswith("layer") and not math.isnan(epochs[l])]
    depth = [int(l[len("layer") :]) for l in layers]
    return spearman(depth, [epochs[l] for l in layers])


def _map_epochs(conv: Convergence) -> "dict[str, torch.Tensor]":
    """Per layer with firing maps, their convergence epochs; a map that never settles gets twice
    the last checkpoint's epoch, so it ranks after every map that does."""
    layers = [l for l in conv.map_converged if conv.map_converged[l]]
    if len(layers) < 2:
        raise Fig4Error("the depth verdict needs per-map convergence of at least two layers")
    never = float(conv.epochs[-1]) * 2
    return {
        l: torch.nan_to_num(torch.tensor(conv.map_converged[l], dtype=torch.float64), nan=never)
        for l in layers
    }


def _depth_spearman(epochs: "dict[str, torch.Tensor]") -> float:
    depth = [int(l[len("layer") :]) for l, v in epochs.items() for _ in range(len(v))]
    return spearman(depth, torch.cat(list(epochs.values())).tolist())


def map_depth_correlation(conv: Convergence) -> float:
    """Spearman correlation of depth (layers 1-5) with the convergence epoch of every firing map
    (> 0: deeper maps settle later); the effect :func:`depth_verdict` decides."""
    return _depth_spearman(_map_epochs(conv))


def fig3_seed_runs(
    profile: "str | Profile", seeds: "int | None" = None, *, train_missing: bool = True
) -> list[TrainRun]:
    """The Fig. 3 network's training runs, one per seed of the comparison study (the ``zf`` rows
    of Table 3, ``seeds`` of them, default the profile's ``comparison_seeds``; seed 0 is the main
    model's own run), so that Fig. 4's convergence reading can be repeated over initialisation
    and data order. Runs not on disk are trained, or with ``train_missing=False`` left out."""
    P = get_profile(profile)
    runs = [
        job.run(P) if train_missing else cached_run(job.spec(P))
        for job in study_jobs(P, ("table3",), ["zf"], seeds)
    ]
    return [r for r in runs if r is not None]


def depth_verdict(
    conv: "Convergence | Sequence[Convergence]", n_boot: int = 2000, seed: int = 0
) -> Verdict:
    """Fig. 4's claim as a verdict: the Spearman correlation of depth (layer 1-5) with the
    per-map convergence epoch over every firing map. Positive = deeper layers settle later, as
    the paper says.

    ``conv`` is one run's convergence or several seeds' of the same network. With several, the
    effect is the mean of the seeds' correlations and the 95 % interval comes from a hierarchical
    bootstrap: the seeds are resampled, then the maps within each layer of each drawn seed. With
    one run the maps alone are resampled and the source says the seed variance is missing."""
    convs = [conv] if isinstance(conv, Convergence) else list(conv)
    if not convs:
        raise Fig4Error("the depth verdict needs the convergence of at least one run")
    runs = [_map_epochs(c) for c in convs]
    g = torch.Generator().manual_seed(seed)
    boots = []
    for _ in range(n_boot):
        drawn = (
            [runs[0]]
            if len(runs) == 1
            else [runs[int(i)] for i in torch.randint(len(runs), (len(runs),), generator=g)]
        )
        rs = []
        for vals in drawn:
            r = _depth_spearman(
                {l: v[torch.randint(len(v), (len(v),), generator=g)] for l, v in vals.items()}
            )
            rs.append(0.0 if math.isnan(r) else r)
        boots.append(sum(rs) / len(rs))
    b = torch.tensor(boots, dtype=torch.float64)
    low, high = (
        float(x) for x in torch.quantile(b, torch.tensor([0.025, 0.975], dtype=torch.float64))
    )
    n = sum(len(v) for v in runs[0].values())
    if len(runs) == 1:
        source = (
            f"bootstrap over {n} firing maps within their layers ({n_boot} resamples; one "
            f"training run: seed variance not included)"
        )
    else:
        maps = "/".join(str(sum(len(v) for v in r.values())) for r in runs)
        source = (
            f"hierarchical bootstrap: the {len(runs)} seeds resampled, then the firing maps "
            f"({maps}) within each layer of each drawn seed ({n_boot} resamples); the effect is "
            f"the mean of the seeds' correlations"
        )
    effect = statistics.fmean(_depth_spearman(r) for r in runs)
    return from_interval("fig4_lower_layers_converge_first", effect, low, high, source=source)


def seed_convergence_numbers(convs: Sequence[Convergence]) -> dict:
    """What notebook 04 records of the convergence reading repeated over the Fig. 3 network's
    seeds: how many, and each seed's depth correlation (per-map and layer-mean top-9)."""
    return {
        "convergence_seeds": len(convs),
        "convergence_depth_spearman_maps_per_seed": [map_depth_correlation(c) for c in convs],
        "convergence_depth_spearman_topk_per_seed": [depth_correlation(c, "topk") for c in convs],
    }


def convergence_text(conv: Convergence) -> str:
    """Per layer: firing maps, the median and IQR of the per-map convergence epochs, and the
    layer-mean top-9 and weight convergence epochs, as printed text."""
    lines = [
        f"{'layer':8s} {'firing maps':>11s} {'median epoch':>12s} {'IQR':>13s} "
        f"{'layer mean top-9 at':>20s} {'weights at':>11s}"
    ]
    for l in conv.map_converged:
        med, q1, q3 = conv.spread(l)
        lines.append(
            f"{l:8s} {conv.alive_maps[l]:5d}/{conv.total_maps[l]:<5d} {med:12g} "
            f"{f'{q1:g}-{q3:g}':>13s} {conv.topk_converged[l]:20g} "
            f"{conv.weight_converged[l]:11g}"
        )
    return "\n".join(lines)


def convergence_numbers(conv: Convergence) -> dict:
    """The numbers notebook 04 records for Fig. 4's convergence reading: per layer the
    convergence epochs (top-9, weights, per-map median and IQR), the depth correlations, the
    thresholds and the number of mined images."""
    return {
        **{f"topk_converged_epoch_{l}": x for l, x in conv.topk_converged.items()},
        **{f"weight_converged_epoch_{l}": x for l, x in conv.weight_converged.items()},
        **{f"map_converged_epoch_median_{l}": conv.spread(l)[0] for l in conv.map_converged},
        **{
            f"map_converged_epoch_iqr_{l}": [conv.spread(l)[1], conv.spread(l)[2]]
            for l in conv.map_converged
        },
        "convergence_depth_spearman_topk": depth_correlation(conv, "topk"),
        "convergence_depth_spearman_weights": depth_correlation(conv, "weights"),
        "topk_threshold": conv.topk_threshold,
        "weight_threshold": conv.weight_threshold,
        "mined_images": conv.n_images,
    }


# ---------------------------------------------------------------------------------------------
# Per-layer schedules: what section 4.2's reading suggests
# ---------------------------------------------------------------------------------------------


@dataclass
class LayerSchedules:
    """One global learning rate against per-layer schedules, each trained with several seeds on
    the complete schedule (section 4.2's reading of Fig. 4: lower layers settle first, so updating
    them all along may waste compute). ``records`` maps an arm's label to its seeds'
    :class:`zfcore.paper.comparisons.NetworkRecord`, in the order global rate (the Fig. 3
    networks of Table 3), frozen early layers, lower early rates; ``images_per_s`` the step
    throughput of the global and the frozen configuration measured now, side by side
    (``"global"``, ``"frozen"``)."""

    epochs: int
    freeze: dict
    layer_lr: dict
    records: dict
    images_per_s: dict
    steps_per_epoch: int

    @property
    def names(self) -> list[str]:
        return list(self.records)

    @property
    def seeds(self) -> int:
        return min(len(r) for r in self.records.values())

    @property
    def speedup(self) -> float:
        """Step throughput with the early layers frozen over that with one global rate."""
        return self.images_per_s["frozen"] / self.images_per_s["global"]

    def _mean(self, name: str, what: str) -> float:
        return statistics.fmean(getattr(r, what) for r in self.records[name])

    def _sd(self, name: str, what: str) -> float:
        vals = [getattr(r, what) for r in self.records[name]]
        return statistics.stdev(vals) if len(vals) > 1 else 0.0

    def epochs_to_reach(self, name: str, target: float) -> "float | None":
        """The first epoch at which the arm's validation top-1 error after each epoch (the
        trainer's, mean over seeds) is at most ``target`` (%), or None if it never is."""
        curves = [r.val_top1_error_per_epoch for r in self.records[name]]
        mean = [statistics.fmean(c[e] for c in curves) for e in range(min(len(c) for c in curves))]
        return next((e + 1.0 for e, v in enumerate(mean) if v <= target), None)

    def relative_time(self, name: str) -> float:
        """The arm's training time as a share of the global rate's, from the step throughput
        measured side by side now: the frozen arm runs the steps after the freeze at ``speedup``
        times the rate; slower rates cost what one global rate costs. (The seconds recorded when
        each network trained mix in the machine's load at the time, so they are not compared.)"""
        if not name.startswith("freeze"):
            return 1.0
        before = min(self.freeze.values()) / self.epochs
        return before + (1 - before) / self.speedup

    def seconds_saved_estimate(self) -> float:
        """Training seconds the freeze saves: the global arm's mean training time times one minus
        the frozen arm's :meth:`relative_time`."""
        return self._mean(self.names[0], "train_seconds") * (1 - self.relative_time(self.names[1]))

    def rows(self) -> list[dict]:
        """One row per arm: validation accuracy (mean and sd over seeds), mean training time
        when trained, the training time relative to one global rate and the images/s, both from
        the throughput measured now."""
        return [
            {
                "name": name,
                "seeds": len(self.records[name]),
                "val accuracy (%)": 100 - self._mean(name, "val_top1_error"),
                "val accuracy sd": self._sd(name, "val_top1_error"),
                "training time (s)": self._mean(name, "train_seconds"),
                "relative training time": self.relative_time(name),
                "images/s": self.images_per_s["frozen"]
                if name.startswith("freeze")
                else self.images_per_s["global"],
            }
            for name in self.names
        ]

    def verdicts(self) -> "tuple[Verdict, Verdict]":
        """Whether freezing, and lowering the rates of, the early layers each cost under one point
        of validation accuracy (margin -1 point): hierarchical bootstraps over each arm's seeds
        and the validation images."""
        g, f, r = self.names
        arrays = {n: {"val": a["val"]} for n, a in network_arrays(self.records).items()}
        kw = dict(margin=-1.0, unit="points")
        return tuple(
            hierarchical_bootstrap(
                claim,
                {arm: arrays[arm], g: arrays[g]},
                lambda m, a=arm: 100 * (m[a]["val"] - m[g]["val"]),
                spread_from=arrays,
                **kw,
            )
            for claim, arm in (
                ("per_layer_freeze_costs_under_1_point", f),
                ("per_layer_rates_cost_under_1_point", r),
            )
        )

    def numbers(self) -> dict:
        """The numbers notebook 04 records for this comparison: accuracies (mean, sd), training
        times, the freeze's speed-up and the seconds it saves, and each arm's epochs and steps to
        come within one point of the global rate's final error."""
        g, f, r = self.names
        target = statistics.fmean(r.val_top1_error_per_epoch[-1] for r in self.records[g]) + 1.0
        out = dict(
            layer_lr_schedule_epochs=self.epochs,
            layer_lr_freeze=self.freeze,
            layer_lr_multipliers=self.layer_lr,
            seeds=self.seeds,
            per_layer_speedup_images_per_s=self.speedup,
            per_layer_seconds_saved_estimate=self.seconds_saved_estimate(),
        )
        for key, name in (("global_rate", g), ("per_layer", f), ("lower_rates", r)):
            reach = self.epochs_to_reach(name, target)
            out.update(
                {
                    f"{key}_val_accuracy": 100 - self._mean(name, "val_top1_error"),
                    f"{key}_val_accuracy_sd": self._sd(name, "val_top1_error"),
                    f"{key}_train_seconds": self._mean(name, "train_seconds"),
                    f"{key}_relative_training_time": self.relative_time(name),
                    f"{key}_epochs_to_within_1_point": reach,
                    f"{key}_steps_to_within_1_point": None
                    if reach is None
                    else int(reach * self.steps_per_epoch),
                }
            )
        return out


def layer_schedules(
    profile: "str | Profile",
    freeze: "Mapping[str, float] | None" = None,
    layer_lr: "Mapping[str, float] | None" = None,
    *,
    seeds: "int | None" = None,
    workers: int = 1,
    train_missing: bool = True,
) -> "LayerSchedules | None":
    """The per-layer arms of the comparison study (:mod:`zfcore.paper.comparisons`), with the
    Fig. 3 networks as the global-rate arm, each with ``seeds`` seeds on the complete schedule
    (trained first where not recorded), and the throughput of the frozen configuration measured
    now.

    ``freeze=None`` freezes :data:`EARLY_LAYERS` at the epoch their top-9 settled on the main
    model's own schedule (:func:`zfcore.paper.comparisons.early_layer_freeze`). With
    ``train_missing=False`` nothing trains, and an arm without any record gives None."""
    p = get_profile(profile)
    freeze = dict(freeze) if freeze is not None else early_layer_freeze(p)
    layer_lr = dict(layer_lr if layer_lr is not None else {layer: 0.1 for layer in EARLY_LAYERS})
    jobs = study_jobs(p, ("table3", "per_layer"), ["zf"], seeds, freeze=freeze, layer_lr=layer_lr)
    recs = network_records(p, jobs, train_missing=train_missing, workers=workers)
    labels = {
        "table3": "one global rate",
        "freeze": "freeze " + ", ".join(f"{layer}@{e:g}" for layer, e in freeze.items()),
        "rates": "rates " + ", ".join(f"{layer} x{m:g}" for layer, m in layer_lr.items()),
    }
    arms: dict = {labels["table3"]: [], labels["freeze"]: [], labels["rates"]: []}
    for j in jobs:
        if j.name in recs:
            arms[labels[j.arm or j.group]].append(recs[j.name])
    empty = [name for name, r in arms.items() if not r]
    if empty and not train_missing:
        return None
    if empty:
        raise Fig4Error(
            f"no record of the arm(s) {empty}: run the study (python -m zfcore.paper.comparisons "
            f"--groups table3,per_layer)"
        )
    # five alternating rounds of five steps: the median stays put on a machine whose load drifts
    ips = compare_throughput(p, {"global": [], "frozen": list(freeze)}, steps=5, rounds=5)
    return LayerSchedules(
        comparison_overrides(p)["epochs"], freeze, layer_lr, arms, ips, p.n_train // p.batch_size
    )


def _recipe_table_headline(n: Numbers) -> str:
    """Notebook 04's recipe comparison as a markdown table (one row per recipe it recorded)."""
    names = sorted(
        {
            k[len("recipe_") : -len("_val_top1_error_pct")]
            for k in n.data
            if k.startswith("recipe_") and k.endswith("_val_top1_error_pct")
        }
    )
    if not names:
        n.missing.append("recipe_<name>_val_top1_error_pct")
        return MISSING
    chosen = n.data.get("profile_recipe")
    head = (
        "| recipe | val top-1 error | layer-1 power below 1/4 cycle/px | dead maps, layers 1-7 | "
        "minutes |\n"
        "| --- | --- | --- | --- | --- |"
    )
    rows = [
        f"| `{r}`{' (chosen)' if r == chosen else ''} | "
        f"{n.f(f'recipe_{r}_val_top1_error_pct', '.1f', unit=' %')} "
        f"| {n.pct(f'recipe_{r}_layer1_low_frequency_share')} "
        f"| {n.seq([f'recipe_{r}_dead_layer{i}' for i in range(1, 8)], '.0f', ' / ', scale=100)} % "
        f"| {n.f(f'recipe_{r}_train_minutes', '.1f')} |"
        for r in names
    ]
    epochs = n.calc(
        lambda e: max(1, round(e / 2)), ["epochs"], "d"
    )  # the screening budget, half the schedule
    return "\n".join([head] + rows) + (
        f"\n\n(after {epochs} epochs each; minutes measured when each was trained, "
        f"on a shared machine)"
    )


#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 04_training_evolution records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "Fig. 4: lower layers converge first",
        lambda n: (
            f"median epoch from which a firing map's top-9 stay final, layers 1-5 (main run): "
            f"{n.seq(layer_keys('map_converged_epoch_median_', ''), 'g')}; rank correlation of "
            f"depth with the per-map epoch, mean of {n.f('convergence_seeds', 'd')} seed(s): "
            f"{n.f('fig4_lower_layers_converge_first_effect', '+.2f')}"
        ),
    ),
    (
        "per-layer rates: freezing layers 1-2 once they settle, or slowing them, costs little",
        lambda n: (
            NOT_RECORDED
            if n.peek("per_layer_arms_recorded") is False
            else f"{n.f('per_layer_speedup_images_per_s', '.1f', unit='x')} faster steps once "
            "frozen; "
            f"validation accuracy after {n.f('layer_lr_schedule_epochs', 'g')} epochs "
            f"(means over each arm's seeds, at least {n.f('seeds', 'd')}): "
            f"frozen {n.f('per_layer_val_accuracy', '.1f', unit=' %')}, early layers at "
            "0.1x the rate "
            f"{n.f('lower_rates_val_accuracy', '.1f', unit=' %')}, one global rate "
            f"{n.f('global_rate_val_accuracy', '.1f', unit=' %')}"
        ),
    ),
]

#: Numbers of notebook 04_training_evolution in the README's prose (``<!-- value:NAME -->``).
README_VALUES: dict[str, Callable[[Numbers], str]] = {
    "training_epochs": lambda n: n.f("epochs", "d"),
    "recipe_table": _recipe_table_headline,
    "training_minutes": lambda n: n.f("training_seconds", ".1f", scale=1 / 60, unit=" min"),
    "training_minutes_with_validation": lambda n: n.calc(
        lambda t, v: (t + v) / 60, ["training_seconds", "validation_seconds"], ".1f", " min"
    ),
    "layer1_low_frequency": lambda n: n.pct("layer1_low_frequency_share"),
    "lr_drop_epoch": lambda n: ", ".join(str(e) for e in n.get("lr_drop_epochs") or []) or MISSING,
    "final_val_accuracy": lambda n: n.f("final_val_accuracy", ".1f", unit=" %"),
}
