"""The explorer's vocabulary (notebook 12, :mod:`zfcore.widgets`): what a user can choose.

* :data:`SOURCES` and :data:`RULES`: where the image comes from, and how an activation is
  projected to pixels (the paper's deconvnet, section 2.1 and Fig. 1; guided backpropagation; the
  plain gradient);
* :class:`ExplorerState`: every choice at once (layer, map, rule, image, page, occlusion square);
  the panels are a function of it and the model;
* :class:`ExplorerError`: a choice the explorer cannot make, with the allowed values;
* two small helpers of the session: :class:`LRUCache`, a least-recently-used cache, and
  :class:`torch_threads`, a torch thread-count switch.

Plain Python and torch: no widgets.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import ZFCoreError

__all__ = ["SOURCES", "RULES", "ExplorerError", "ExplorerState", "LRUCache", "torch_threads"]

SOURCES = ("dataset", "sample", "upload")
RULES = ("deconvnet", "guided", "gradient")


class ExplorerError(ZFCoreError, ValueError):
    """A choice the explorer cannot make (unknown layer or rule, map out of range, bad image)."""

    __module__ = "zfcore.widgets"  # its public name (tracebacks, pickles, the error walk)


@dataclass(frozen=True)
class ExplorerState:
    """Everything the user has chosen. Panels are a function of the state (and the model)."""

    layer: str = "layer1"
    unit: int = 0  # the selected feature map (or unit of layers 6, 7)
    rule: str = "deconvnet"
    source: str = "dataset"  # "dataset", "sample" or "upload"
    index: int = 0  # data set index (source "dataset")
    sample: str = "cat"  # sample photo name (source "sample")
    upload: str = ""  # uploaded file name (source "upload")
    page: int = 0  # page of the activation grid
    occlusion_size: int = 0  # grey square side in pixels (0: the session's default)

    @property
    def image_key(self) -> tuple:
        return {
            "dataset": ("dataset", self.index),
            "sample": ("sample", self.sample),
            "upload": ("upload", self.upload),
        }[self.source]


class LRUCache(OrderedDict):
    """A small least-recently-used cache of at most ``size`` entries (memory stays bounded while
    the user browses): :meth:`get_or` returns the entry of a key, building it on a miss."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key, build: Callable[[], Any]):
        """The value of ``key``, made the most recent; on a miss ``build()`` is stored (dropping
        the least recently used entry beyond ``size``) and returned."""
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = build()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class torch_threads:
    """``with torch_threads(1):`` runs torch with one intra-op thread, then restores the count
    (``None``: leave torch's setting alone)."""

    def __init__(self, n: int | None):
        self.n, self.before = n, None

    def __enter__(self):
        if self.n is not None:
            self.before = torch.get_num_threads()
            if self.before != self.n:
                torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.before is not None and self.before != self.n:
            torch.set_num_threads(self.before)
        return False
