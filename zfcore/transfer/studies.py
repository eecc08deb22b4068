"""The transfer studies of section 5, each cached by a hash of the model's weights, the data and
the configuration.

* :func:`run_transfer`: Tables 4-5 and Fig. 9: a new softmax on the frozen layer-7 features
  against the same architecture trained from scratch (and, optionally, fine-tuning), ``n`` images
  per class, several draws.
* :func:`training_speed`: section 5's "faster training": the cost of reaching the from-scratch
  network's accuracy with the pretrained features and a new softmax, against the scratch network's.
* :func:`probe_layers`: Table 7: a linear SVM and a softmax on each of layers 1-7.
* :func:`run_multilabel`: Table 6: one-vs-rest classifiers on PASCAL VOC 2012, scored by
  per-class average precision.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict
from functools import partial
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..cache import cached
from ..features import LAYERS, Features, cached_features, extract_features, model_fingerprint
from ..probes import TransferError, fit_probe, load_batch, mean_class_accuracy, per_class_ap
from .config import TransferConfig
from .data import TransferData, make_splits
from .results import (
    LayerProbeResult,
    MultiLabelResult,
    TrainingSpeedResult,
    TransferResult,
    steps_to_reach,
)
from .training import (
    TransferNet,
    _preloaded,
    _trainer,
    checks_made,
    fit_images,
    fit_to_plateau,
    predict_scores,
    scratch_like,
    train_head,
)

__all__ = [
    "TRANSFER_VERSION",
    "SPEED_VERSION",
    "run_transfer",
    "training_speed",
    "probe_layers",
    "run_multilabel",
]


# ---------------------------------------------------------------------------------------------
# Cache keys and the shared pieces
# ---------------------------------------------------------------------------------------------

#: Bump when a study's computation changes (part of every cache key).
TRANSFER_VERSION = 4  # 4: scratch trained to a plateau; per-image correctness kept
#: Bump when :func:`training_speed`'s computation changes (its cache key only).
SPEED_VERSION = 1


def _remap(labels: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    present = torch.unique(labels)
    lut = torch.full((int(present.max()) + 1,), -1, dtype=torch.long)
    lut[present] = torch.arange(len(present))
    return lut[labels], present.tolist()


def _class_names(data: TransferData, present: list[int]) -> list[str]:
    return [data.classes[c] if c < len(data.classes) else str(c) for c in present]


def _config_key(
    model: nn.Module, data_key: Any, config: TransferConfig, kind: str, **extra
) -> dict:
    return {
        "version": TRANSFER_VERSION,
        "kind": kind,
        "model": model_fingerprint(model),
        "data": data_key,
        "config": asdict(config),
        **extra,
    }


def _features(
    model,
    data: TransferData,
    config: TransferConfig,
    layers,
    cache_dir,
    device,
    progress,
    test: bool = False,
) -> Features:
    return cached_features(
        model,
        data.test_dataset if test else data.dataset,
        data_key=data.test_key if test else data.key,
        cache_dir=cache_dir,
        layers=layers,
        pooled_side=config.pooled_side,
        pool=config.pool,
        batch_size=config.batch_size,
        device=device,
        progress=progress,
        desc=f"{data.name} features",
    )


# ---------------------------------------------------------------------------------------------
# Tables 4-5 and Fig. 9: pretrained vs from scratch, n images per class, several draws
# ---------------------------------------------------------------------------------------------


def run_transfer(
    model: nn.Module,
    data: TransferData,
    config: TransferConfig,
    *,
    cache_dir,
    device: "str | torch.device" = "cpu",
    progress: bool = True,
) -> TransferResult:
    """Tables 4-5 and Fig. 9 on ``data``: for every draw and ``n`` in ``config.ns``, a new softmax
    on the frozen ``config.layer`` features of ``model`` (trained on the precomputed features),
    optionally fine-tuned end to end, and the same architecture trained from scratch on the same
    ``n`` images per class; all scored on the draw's test images. Cached by configuration hash.
    """
    from tqdm.auto import tqdm

    def build() -> dict:
        import time

        feats = _features(model, data, config, [config.layer], cache_dir, device, progress)
        y, present = _remap(feats.labels.long())
        K = len(present)
        X = feats[config.layer]
        splits = make_splits(y, config.ns, config.draws, config.test_per_class, config.seed)
        shape = (config.draws, len(config.ns))
        pre = torch.zeros(shape)
        net_shape = (config.trained_draws, len(config.ns))
        scr = torch.zeros(net_shape) if config.scratch else torch.zeros(0, len(config.ns))
        fin = torch.zeros(net_shape) if config.fine_tune else torch.zeros(0, len(config.ns))
        ap = torch.zeros(*shape, K)
        T = len(splits[0].test)
        correct = {"pretrained": torch.zeros(*shape, T, dtype=torch.bool)}
        if config.scratch:
            correct["scratch"] = torch.zeros(*net_shape, T, dtype=torch.bool)
        if config.fine_tune:
            correct["fine_tuned"] = torch.zeros(*net_shape, T, dtype=torch.bool)
        test_labels = torch.stack([y[s.test] for s in splits])
        scr_train = torch.zeros(net_shape) if config.scratch else torch.zeros(0)
        scr_steps = torch.zeros(net_shape, dtype=torch.long) if config.scratch else torch.zeros(0)
        scr_stopped = (
            [["" for _ in config.ns] for _ in range(config.trained_draws)] if config.scratch else []
        )
        fit_time = 0.0
        jobs = [(s, j, n) for s in splits for j, n in enumerate(config.ns)]
        for s, j, n in tqdm(jobs, desc=f"transfer to {data.name}", disable=not progress):
            tr, te = s.train[n], s.test
            t0 = time.perf_counter()
            probe = fit_probe(
                X[tr],
                y[tr],
                "softmax",
                num_classes=K,
                reg=config.reg,
                max_iter=config.max_iter,
                seed=config.seed,
            )
            fit_time += time.perf_counter() - t0
            scores = probe.scores(X[te])
            pre[s.draw, j] = mean_class_accuracy(scores.argmax(1), y[te])
            correct["pretrained"][s.draw, j] = scores.argmax(1) == y[te]
            ap[s.draw, j] = per_class_ap(scores.softmax(1), y[te])
            if s.draw >= config.trained_draws or not (config.scratch or config.fine_tune):
                continue
            if j == 0:  # this draw's images, held in memory for every n (nested) and the test
                images = _preloaded(data.dataset, torch.cat([s.train[max(config.ns)], te]))
            run_seed = config.seed * 1000 + s.draw * 100 + j

            def score(net: nn.Module, arm: str) -> float:
                pred = predict_scores(net, images, te, config.batch_size, device).argmax(1)
                correct[arm][s.draw, j] = pred == y[te]
                return mean_class_accuracy(pred, y[te])

            if config.fine_tune:
                net = TransferNet.from_probe(model, probe, config.layer, fine_tune=True)
                fit_images(
                    net,
                    images,
                    tr,
                    y[tr],
                    steps=config.steps(config.fine_tune_epochs, len(tr)),
                    lr=config.fine_tune_lr,
                    batch_size=config.train_batch,
                    seed=run_seed,
                    device=device,
                    progress=False,
                )
                fin[s.draw, j] = score(net, "fine_tuned")
            if config.scratch:
                net = scratch_like(model, K, seed=run_seed)
                fit = fit_to_plateau(
                    net,
                    images,
                    tr,
                    y[tr],
                    lr=config.scratch_lr,
                    min_steps=config.scratch_min_steps,
                    max_steps=config.scratch_max_steps,
                    check_every=config.scratch_check_every,
                    patience=config.scratch_patience,
                    min_gain=config.scratch_min_gain,
                    fit_accuracy=config.scratch_fit_accuracy,
                    batch_size=config.train_batch,
                    seed=run_seed,
                    shift=config.scratch_shift,
                    device=device,
                )
                scr[s.draw, j] = score(net, "scratch")
                scr_train[s.draw, j] = fit.train_accuracy
                scr_steps[s.draw, j] = fit.steps
                scr_stopped[s.draw][j] = fit.stopped
        return TransferResult(
            data.name,
            _class_names(data, present),
            list(config.ns),
            pre,
            scr,
            fin,
            ap,
            int(len(splits[0].test)),
            int(X.shape[1]),
            fit_time / len(jobs),
            asdict(config),
            correct,
            test_labels,
            scr_train,
            scr_steps,
            scr_stopped,
        ).to_dict()

    key = _config_key(model, data.key, config, "transfer")
    return TransferResult.from_dict(cached(cache_dir, "transfer", key, build))


# ---------------------------------------------------------------------------------------------
# Section 5's "faster training": the cost of each arm's classifier
# ---------------------------------------------------------------------------------------------


def _seconds(work: Callable[[], Any], device, repeats: int = 1) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``work`` (after one untimed call)."""

    def once() -> float:
        t0 = time.perf_counter()
        work()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    once()
    return statistics.median(once() for _ in range(repeats))


def training_speed(
    model: nn.Module,
    data: TransferData,
    config: TransferConfig,
    *,
    cache_dir,
    device: "str | torch.device" = "cpu",
    progress: bool = True,
    timing_steps: int = 5,
) -> TrainingSpeedResult:
    """Section 5's "faster training" on :func:`run_transfer`'s draws (cached; its scratch runs
    are read, not trained again): for every draw the scratch network ran on and every ``n``, a
    new softmax on the frozen ``config.layer`` features, trained with the scratch network's Adam
    rate and minibatches (:func:`train_head`, seeded as that scratch run) for
    ``config.scratch_max_steps`` steps; its cost is the first step from which its test accuracy
    reaches the one the scratch network ended at and stays there (:func:`steps_to_reach`).

    Seconds, on this machine in this run, per ``n`` on the first draw's training images: the
    pretrained arm's one-off feature extraction of the ``n`` x K training images
    (:func:`zfcore.features.extract_features`); the scratch network's Adam step on a minibatch
    with its flips and shifts (median of ``timing_steps``) and its training-accuracy check (the
    median of two). Cached by configuration hash.
    """
    from tqdm.auto import tqdm

    if not config.scratch:
        raise TransferError(
            "training_speed compares with the from-scratch network: run with scratch=True"
        )

    def build() -> dict:
        result = run_transfer(
            model, data, config, cache_dir=cache_dir, device=device, progress=progress
        )
        feats = _features(model, data, config, [config.layer], cache_dir, device, progress)
        y, present = _remap(feats.labels.long())
        K, X = len(present), feats[config.layer]
        splits = make_splits(y, config.ns, config.draws, config.test_per_class, config.seed)[
            : config.trained_draws
        ]
        shape = (len(splits), len(config.ns))
        pre_steps = torch.zeros(shape, dtype=torch.long)
        reached = torch.zeros(shape, dtype=torch.bool)
        head_s = torch.zeros(shape, dtype=torch.float64)
        checks = torch.tensor(
            [
                [
                    checks_made(
                        int(result.scratch_steps[d, j]),
                        config.scratch_check_every,
                        config.scratch_max_steps,
                    )
                    for j in range(len(config.ns))
                ]
                for d in range(len(splits))
            ],
            dtype=torch.long,
        )
        jobs = [(s, j, n) for s in splits for j, n in enumerate(config.ns)]
        for s, j, n in tqdm(jobs, desc=f"training speed on {data.name}", disable=not progress):
            tr, te, goal = s.train[n], s.test, float(result.scratch[s.draw, j])
            run = train_head(
                X[tr],
                y[tr],
                X[te],
                y[te],
                K,
                max_steps=config.scratch_max_steps,
                lr=config.scratch_lr,
                batch_size=config.train_batch,
                seed=config.seed * 1000 + s.draw * 100 + j,
            )
            hit = steps_to_reach(run.accuracy, goal)
            k = run.steps if hit is None else hit
            reached[s.draw, j], pre_steps[s.draw, j], head_s[s.draw, j] = (
                hit is not None,
                k,
                run.seconds[k - 1],
            )
        feat_s, step_s, check_s = (
            torch.zeros(len(config.ns), dtype=torch.float64) for _ in range(3)
        )
        images = _preloaded(data.dataset, splits[0].train[max(config.ns)])
        for j, n in enumerate(config.ns):
            tr = splits[0].train[n]
            x, _ = load_batch(images, tr)
            feat_s[j] = _seconds(
                partial(
                    extract_features,
                    model,
                    (x, y[tr]),
                    [config.layer],
                    pooled_side=config.pooled_side,
                    pool=config.pool,
                    batch_size=config.batch_size,
                    device=device,
                    progress=False,
                ),
                device,
            )
            net = scratch_like(model, K, seed=config.seed)
            step = _trainer(
                net,
                images,
                tr,
                y[tr],
                lr=config.scratch_lr,
                flip=True,
                shift=config.scratch_shift,
                seed=config.seed,
                device=device,
            )
            step_s[j] = _seconds(
                partial(step, torch.arange(min(config.train_batch, len(tr)))),
                device,
                repeats=timing_steps,
            )
            check_s[j] = _seconds(
                partial(predict_scores, net, images, tr, config.batch_size, device), device, 2
            )
        return TrainingSpeedResult(
            data.name,
            list(config.ns),
            config.scratch_max_steps,
            result.scratch.clone(),
            result.scratch_steps.long(),
            checks,
            pre_steps,
            reached,
            head_s,
            feat_s,
            step_s,
            check_s,
            asdict(config),
        ).to_dict()

    key = _config_key(
        model, data.key, config, "speed", speed_version=SPEED_VERSION, timing_steps=timing_steps
    )
    return TrainingSpeedResult.from_dict(cached(cache_dir, "transfer", key, build))


# ---------------------------------------------------------------------------------------------
# Table 7: a linear SVM and a softmax on each layer's features
# ---------------------------------------------------------------------------------------------


def probe_layers(
    model: nn.Module,
    data: TransferData,
    config: TransferConfig,
    *,
    n: int | None = None,
    layers: Sequence[str] = LAYERS,
    methods: Sequence[str] = ("svm", "softmax"),
    cache_dir,
    device: "str | torch.device" = "cpu",
    progress: bool = True,
) -> LayerProbeResult:
    """Table 7: train each of ``methods`` on each layer's features with ``n`` images per class
    (default ``max(config.ns)``) and score them on the test images, for every draw.

    The draws are :func:`make_splits` with ``config.ns`` and ``config.seed``: exactly the
    training and test images that :func:`run_transfer` uses for the same ``n``. All layers come
    from one streaming pass (:func:`zfcore.features.extract_features`).
    """
    from tqdm.auto import tqdm

    n = max(config.ns) if n is None else int(n)
    if n not in config.ns:
        raise TransferError(
            f"n = {n} is not one of config.ns = {config.ns}: the splits are shared "
            f"with run_transfer, so pick one of those"
        )
    bad = [m for m in methods if m not in ("svm", "softmax")]
    if bad:
        raise TransferError(f"Table 7 methods are 'svm' and 'softmax', not {bad}")
    layers = list(layers)

    def build() -> dict:
        feats = _features(model, data, config, layers, cache_dir, device, progress)
        y, present = _remap(feats.labels.long())
        splits = make_splits(y, config.ns, config.draws, config.test_per_class, config.seed)
        acc = {m: torch.zeros(config.draws, len(layers)) for m in methods}
        T = len(splits[0].test)
        correct = {m: torch.zeros(config.draws, len(layers), T, dtype=torch.bool) for m in methods}
        jobs = [(s, i, l, m) for s in splits for i, l in enumerate(layers) for m in methods]
        for s, i, l, m in tqdm(jobs, desc="probing layers", disable=not progress):
            X = feats[l]
            tr, te = s.train[n], s.test
            probe = fit_probe(
                X[tr],
                y[tr],
                m,
                num_classes=len(present),
                reg=config.reg,
                C=config.svm_C,
                max_iter=config.max_iter,
                seed=config.seed,
            )
            pred = probe.predict(X[te])
            acc[m][s.draw, i] = mean_class_accuracy(pred, y[te])
            correct[m][s.draw, i] = pred == y[te]
        return LayerProbeResult(
            data.name,
            layers,
            n,
            acc,
            [int(feats[l].shape[1]) for l in layers],
            T,
            _class_names(data, present),
            asdict(config),
            correct,
            torch.stack([y[s.test] for s in splits]),
        ).to_dict()

    key = _config_key(model, data.key, config, "layers", layers=layers, n=n, methods=list(methods))
    return LayerProbeResult.from_dict(cached(cache_dir, "transfer", key, build))


# ---------------------------------------------------------------------------------------------
# Table 6: multi-label classification scored by per-class average precision (PASCAL VOC)
# ---------------------------------------------------------------------------------------------


def run_multilabel(
    model: nn.Module,
    data: TransferData,
    config: TransferConfig,
    *,
    cache_dir,
    method: str = "sigmoid",
    device: "str | torch.device" = "cpu",
    progress: bool = True,
) -> MultiLabelResult:
    """Table 6: one-vs-rest classifiers (``"sigmoid"`` logistic or ``"svm"``) on the frozen
    ``config.layer`` features of every image of ``data.dataset`` (multi-hot labels), scored by
    per-class AP on ``data.test_dataset``."""
    if data.test_dataset is None:
        raise TransferError(f"{data.name} has no test split: multi-label data needs test_dataset")
    if method not in ("sigmoid", "svm"):
        raise TransferError(f"method must be 'sigmoid' or 'svm', not {method!r}")

    def build() -> dict:
        tr = _features(model, data, config, [config.layer], cache_dir, device, progress)
        te = _features(model, data, config, [config.layer], cache_dir, device, progress, test=True)
        if tr.labels.dim() != 2:
            raise TransferError(
                f"{data.name}: multi-label data needs multi-hot (N, K) labels, got "
                f"shape {tuple(tr.labels.shape)}"
            )
        probe = fit_probe(
            tr[config.layer],
            tr.labels,
            method,
            reg=config.reg,
            C=config.svm_C,
            max_iter=config.max_iter,
            seed=config.seed,
        )
        ap = per_class_ap(probe.scores(te[config.layer]), te.labels, mode="voc")
        return MultiLabelResult(
            data.name, list(data.classes), ap, len(tr), len(te), asdict(config)
        ).to_dict()

    key = _config_key(model, [data.key, data.test_key], config, "multilabel", method=method)
    return MultiLabelResult.from_dict(cached(cache_dir, "transfer", key, build))
