"""What every epoch measures: loss and top-1/top-5 error (%), as the paper reports them.

Training error is the running error of the epoch with dropout and the crops and flips (as the
paper reports training error); validation error is measured in eval mode on the un-augmented
validation split (section 5.1 reports top-1 and top-5, Tables 2-3). Each epoch also records
the eval-mode error on as many training images (the over-fitting gap), the share of dead maps
per layer (``zfcore.health``) and the largest filter RMS (the clipping of section 3 holds it at
0.1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..models import eval_mode
from .batches import RenderedScenes, as_source, index_loader


@dataclass
class EpochMetrics:
    """One epoch of training: running train loss/errors (with dropout and augmentation, as the
    paper reports training error) and validation loss/errors; errors in percent."""

    epoch: int
    lr: float
    train_loss: float
    train_top1_error: float
    train_top5_error: float
    val_loss: float
    val_top1_error: float
    val_top5_error: float
    train_seconds: float
    val_seconds: float
    images_per_s: float
    clipped_filters: int
    #: top-1/top-5 error (%) in eval mode, no augmentation, on a fixed subset of training images
    #: as large as the validation set (the gap to validation error measures over-fitting)
    train_eval_top1_error: float = float("nan")
    train_eval_top5_error: float = float("nan")
    #: per layer, the share of maps that fired on no validation image (``zfcore.health``)
    dead_share: dict = dataclasses.field(default_factory=dict)
    #: the largest RMS of any convolutional filter at the end of the epoch (clipping at 0.1)
    max_filter_rms: float = float("nan")
    #: seconds of ``train_seconds`` the loop spent waiting for its next batch (on a GPU, with the
    #: batches made ahead, near zero when data keeps up)
    data_seconds: float = float("nan")

    @property
    def val_accuracy(self) -> float:
        return 100.0 - self.val_top1_error


def batch_counts(logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """``(4,)`` float64 on the logits' device: the batch's summed loss, top-1 hits, top-5 hits
    and images. Sums of these over batches (and processes) give :func:`summarise_counts`'s
    numbers without reading anything back from the device per batch."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top == y[:, None]
    return torch.stack(
        [
            loss.detach() * len(y),
            hit[:, 0].sum(),
            hit.any(1).sum(),
            torch.tensor(float(len(y)), device=loss.device),
        ]
    ).double()


def summarise_counts(c: torch.Tensor) -> tuple[float, float, float]:
    """Mean loss, top-1 and top-5 error (%) from summed :func:`batch_counts`."""
    n = max(float(c[3]), 1.0)
    return float(c[0]) / n, 100.0 * (1 - float(c[1]) / n), 100.0 * (1 - float(c[2]) / n)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset,
    batch_size: int = 256,
    device: "str | torch.device" = "cpu",
    rank: int = 0,
    world: int = 1,
    num_workers: int = 0,
    limit: int | None = None,
) -> dict[str, float]:
    """Loss and top-1/top-5 error (%) of ``model`` on ``dataset`` (its first ``limit`` images) in
    eval mode.

    ``dataset`` yields ``(normalised image, label)`` (or is a :class:`RenderedScenes`).

    With ``world`` processes each evaluates every ``world``-th image and the counts are summed.
    """
    c = torch.zeros(4, dtype=torch.float64, device=device)
    with eval_mode(model):
        for x, y in _eval_stream(dataset, batch_size, rank, world, num_workers, limit, device):
            x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            out = model(x)
            c += batch_counts(out, y, F.cross_entropy(out, y))
    if world > 1:
        dist.all_reduce(c)
    loss, e1, e5 = summarise_counts(c.cpu())
    return {"loss": loss, "top1_error": e1, "top5_error": e5, "n": int(c[3])}


def _eval_stream(
    dataset,
    batch_size: int,
    rank: int = 0,
    world: int = 1,
    num_workers: int = 0,
    limit: int | None = None,
    device: "str | torch.device" = "cpu",
):
    """Batches ``(images, labels)`` of the first ``limit`` images, un-augmented, in order (on
    ``device`` when the data is rendered in memory, else on the CPU, in pinned memory for a GPU)."""
    source = as_source(dataset)
    n = len(source) if limit is None else min(limit, len(source))
    idx = list(range(rank, n, world))
    batches = [idx[s : s + batch_size] for s in range(0, len(idx), batch_size)]
    if isinstance(source, RenderedScenes):
        return (source.batch(b, 0, augment=False, device=device) for b in batches)
    return index_loader(
        source, batches, num_workers, pin_memory=torch.device(device).type == "cuda"
    )
