"""Section 5.3 of Zeiler & Fergus (2014): Table 7, the features of each layer (notebook 11).

"We explore how discriminative the features in each layer of our ImageNet-pretrained model
are ... by varying the number of layers retained from the ImageNet model and place either a
linear SVM or softmax classifier on top." Table 7 reports the accuracy on Caltech-101 and
Caltech-256 of each of layers 1-7: "as the feature hierarchies become deeper, they learn
increasingly powerful features."

* :func:`probe_layers` and :class:`LayerProbeResult`: a linear SVM and a softmax
  (:func:`zfcore.probes.fit_probe`) on the features of each of layers 1-7, with exactly the
  draws of training and test images that :func:`zfcore.paper.tables4_6_transfer.run_transfer`
  uses; :meth:`LayerProbeResult.verdict` decides "deeper layers give better features"
  (:func:`~zfcore.paper.tables4_6_transfer.draws_bootstrap`).
* :data:`METHODS` and :func:`check_methods`: Table 7's two classifiers.

Cached under ``<cache_dir>/transfer/`` with section 5's other studies
(:func:`~zfcore.paper.tables4_6_transfer.study_key`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from ..cache import cached
from ..features import LAYERS
from ..probes import fit_probe, mean_class_accuracy
from ..study import Result
from ..transfer import (
    TransferConfig,
    TransferData,
    TransferError,
    make_splits,
    remap_labels,
    transfer_features,
)
from .headline import MISSING, Numbers, layer_keys
from .tables4_6_transfer import draws_bootstrap, record_prefix, std_over_draws, study_key
from .verdicts import Verdict

__all__ = [
    "FeatureStudyError",
    "METHODS",
    "check_methods",
    "LayerProbeResult",
    "probe_layers",
    "record_prefix",
]

#: Table 7's classifiers on each layer's features.
METHODS = ("svm", "softmax")


class FeatureStudyError(TransferError):
    """Bad input to Table 7's study: an unknown classifier, a layer not probed, an ``n`` that
    is not one of the transfer study's."""


def check_methods(methods: Sequence[str]) -> list[str]:
    """``methods`` as a list if it is a non-empty subset of :data:`METHODS`, else
    :class:`FeatureStudyError`."""
    if isinstance(methods, str) or not methods or any(m not in METHODS for m in methods):
        raise FeatureStudyError(
            f"methods must be a non-empty subset of {list(METHODS)}, not {methods!r}"
        )
    return list(methods)


@dataclass
class LayerProbeResult(Result):
    """Accuracy per layer (Table 7): ``accuracy[method]`` is ``(draws, len(layers))``, the average
    of per-class accuracies of that classifier on that layer's features."""

    dataset: str
    layers: list[str]
    n: int
    accuracy: dict[str, torch.Tensor]
    dims: list[int]
    test_images: int
    classes: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    #: per test image: ``correct[method]`` is a bool ``(draws, len(layers), test images)``
    correct: dict = field(default_factory=dict)
    #: the test images' classes per draw, ``(draws, test images)``
    test_labels: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.long))

    @property
    def methods(self) -> list[str]:
        return list(self.accuracy)

    def mean(self, method: str) -> torch.Tensor:
        """Mean over draws, one value per layer (in double precision)."""
        return self.accuracy[method].double().mean(0)

    def std(self, method: str) -> torch.Tensor:
        """Standard deviation over draws (sample, ``n - 1``; 0 with a single draw)."""
        return std_over_draws(self.accuracy[method])

    def monotone(self, method: str) -> bool:
        """Does the mean accuracy never fall from one layer to the next?"""
        m = self.mean(method)
        return bool((m[1:] >= m[:-1]).all())

    def drops(self, method: str) -> list[tuple[str, str, float]]:
        """``(layer, next layer, fall in mean accuracy)`` wherever it falls with depth."""
        m = self.mean(method)
        return [
            (self.layers[i], self.layers[i + 1], float(m[i] - m[i + 1]))
            for i in range(len(m) - 1)
            if m[i + 1] < m[i]
        ]

    def best_layer(self, method: str) -> str:
        """The layer of the highest mean accuracy (the first of ties)."""
        return self.layers[int(self.mean(method).argmax())]

    def rows(self) -> list[dict]:
        """Table 7's rows: layer, feature dimension, each method's mean and std (%)."""
        return [
            {
                "layer": l,
                "dims": d,
                **{f"{m}_accuracy_pct": 100 * float(self.mean(m)[j]) for m in self.methods},
                **{f"{m}_std_pct": 100 * float(self.std(m)[j]) for m in self.methods},
            }
            for j, (l, d) in enumerate(zip(self.layers, self.dims))
        ]

    def numbers(self, prefix: str = "") -> dict:
        """Flat numbers for notebook 11's record, per method: ``<m>_accuracy_pct_<layer>`` and
        ``<m>_accuracy_std_pct_<layer>`` (mean and standard deviation over draws, %)."""
        out = {}
        for m in self.methods:
            out.update(
                {
                    f"{prefix}{m}_accuracy_pct_{l}": 100 * float(v)
                    for l, v in zip(self.layers, self.mean(m))
                }
            )
            out.update(
                {
                    f"{prefix}{m}_accuracy_std_pct_{l}": 100 * float(v)
                    for l, v in zip(self.layers, self.std(m))
                }
            )
        return out

    def depth_numbers(self, method: str, prefix: str = "") -> dict:
        """``<m>_monotone_with_depth`` and ``<m>_best_layer``, for notebook 11's record."""
        return {
            f"{prefix}{method}_monotone_with_depth": self.monotone(method),
            f"{prefix}{method}_best_layer": self.best_layer(method),
        }

    def verdict(
        self,
        method: str,
        deep: Sequence[str] = ("layer5", "layer6", "layer7"),
        shallow: Sequence[str] = ("layer1", "layer2", "layer3"),
        *,
        prefix: str = "",
        n_boot: int = 2000,
        seed: int = 0,
    ) -> Verdict:
        """Table 7's claim ("higher layers generally produce more discriminative features"):
        the mean accuracy of the ``deep`` layers minus that of the ``shallow`` ones (points),
        decided by :func:`~zfcore.paper.tables4_6_transfer.draws_bootstrap` over the draws and
        the test images (the same images for every layer). Claim
        ``<prefix>deeper_layers_better_<method>``."""
        missing = [l for l in (*deep, *shallow) if l not in self.layers]
        if missing or not deep or not shallow:
            raise FeatureStudyError(
                f"layers {missing} were not probed (probed: {self.layers}); "
                f"pass deep=/shallow= from those"
            )
        if method not in self.correct:
            raise FeatureStudyError(
                f"no per-image results for {method!r}; methods: {list(self.correct)}"
            )
        c = self.correct[method].float()

        def pick(ls: Sequence[str]) -> torch.Tensor:
            return c[:, [self.layers.index(l) for l in ls]].mean(1)

        return draws_bootstrap(
            f"{prefix}deeper_layers_better_{method}",
            pick(deep),
            pick(shallow),
            self.test_labels,
            n_boot=n_boot,
            seed=seed,
        )

    def verdict_detail(self, method: str) -> str:
        """The accuracies behind :meth:`verdict` with the default layers (1-3 and 5-7), and
        chance."""
        acc = 100 * self.mean(method)
        deep, shallow = float(acc[-3:].mean()), float(acc[:3].mean())
        return (
            f"(layers 5-7: {deep:.1f} % vs layers 1-3: {shallow:.1f} %, chance "
            f"{100 / len(self.classes):.1f} %)"
        )

    def conclusion(self, method: str, verdict: Verdict) -> str:
        """Table 7's reading for ``method`` in one sentence, with :meth:`verdict`'s outcome."""
        acc = 100 * self.mean(method)
        best = int(acc.argmax())
        drops = ", ".join(f"{a} -> {b} (-{100 * d:.1f})" for a, b, d in self.drops(method))
        return (
            f"{self.dataset}, {method}: layer 1 {acc[0]:.1f} % -> layer 7 {acc[-1]:.1f} %, best "
            f"{self.layers[best]} ({acc[best]:.1f} %); "
            f"{'monotone' if self.monotone(method) else 'not monotone'} with depth "
            f"(falls: {drops or 'none'}). The paper's claim that deeper layers give more "
            f"discriminative features: {verdict.verdict} here."
        )


def probe_layers(
    model: nn.Module,
    data: TransferData,
    config: TransferConfig,
    *,
    n: int | None = None,
    layers: Sequence[str] = LAYERS,
    methods: Sequence[str] = METHODS,
    cache_dir,
    device: "str | torch.device" = "cpu",
    progress: bool = True,
) -> LayerProbeResult:
    """Table 7: train each of ``methods`` on each layer's features with ``n`` images per class
    (default ``max(config.ns)``) and score them on the test images, for every draw.

    The draws are :func:`zfcore.transfer.make_splits` with ``config.ns`` and ``config.seed``:
    exactly the training and test images that
    :func:`~zfcore.paper.tables4_6_transfer.run_transfer` uses for the same ``n``. All layers
    come from one streaming pass (:func:`zfcore.features.extract_features`).
    """
    from tqdm.auto import tqdm

    n = max(config.ns) if n is None else int(n)
    if n not in config.ns:
        raise FeatureStudyError(
            f"n = {n} is not one of config.ns = {config.ns}: the splits are shared "
            f"with run_transfer, so pick one of those"
        )
    methods = check_methods(methods)
    layers = list(layers)

    def build() -> dict:
        feats = transfer_features(
            model, data, config, layers, cache_dir=cache_dir, device=device, progress=progress
        )
        y, present = remap_labels(feats.labels)
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
            data.names_of(present),
            asdict(config),
            correct,
            torch.stack([y[s.test] for s in splits]),
        ).to_dict()

    key = study_key(model, data.key, config, "layers", layers=layers, n=n, methods=list(methods))
    return LayerProbeResult.from_dict(cached(cache_dir, "transfer", key, build))


#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 11_feature_analysis records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "Table 7: deeper layers give better features",
        lambda n: (
            "linear SVM, layers 1-7: "
            f"{n.seq(layer_keys('svm_accuracy_pct_', '', range(1, 8)), '.1f')} % "
            f"(best: {n.get('svm_best_layer') or MISSING}; "
            f"{n.word('svm_monotone_with_depth', 'monotone', 'not monotone')})"
        ),
    ),
]
