"""Run zfcore's engine on the CPU as if its model lived on a GPU, and record what would wait for
the GPU or move data behind the code's back there.

A CPU-only machine cannot show a host-device round trip: ``.cpu()`` on a CPU tensor costs
nothing, and a tensor made on the CPU mixes freely with the model's. :class:`DeviceAudit` (a
``TorchFunctionMode``) tracks which tensors would live on the model's device and reports:

* ``syncs``: the host reads a value of a device tensor (``.item()``, ``.tolist()``,
  ``.numpy()``, ``.cpu()``/``.to("cpu")`` without ``non_blocking``, ``bool()``/``int()``/
  ``float()``, ``torch.allclose``/``torch.equal``, a boolean mask or ``nonzero``/``unique``
  whose result size depends on the device's data, a device value written into a host tensor):
  each makes the CPU wait for the GPU's queue;
* ``mixes``: one operation takes a device tensor and a host tensor (an index, an operand, a
  value written): on a GPU that is an error or a hidden, blocking host-to-device copy.

What lives on the device: the model's parameters (``nn.Parameter``), what ``.to(d)`` moves to a
``torch.device`` object (``zfcore.models.model_device`` returns one; the host is named by the
string ``"cpu"``, by ``.cpu()`` or by the ``.device`` of a host tensor), what a factory makes with
such a ``device=``, and everything computed from a device tensor. Everything else is host memory.
Only events whose nearest caller outside torch is in ``zfcore`` count (not the optimiser's own
bookkeeping in ``torch.optim``, not the test's).
"""

from __future__ import annotations

import sys
from collections import Counter

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

#: Reading a device value on the host.
READS = {
    "item",
    "tolist",
    "numpy",
    "__bool__",
    "__int__",
    "__float__",
    "__index__",
    "allclose",
    "equal",
    "__format__",
    "__repr__",
}
#: Results whose size depends on the device's data (the host must wait to know it).
DATA_SIZED = {"nonzero", "unique", "masked_select", "argwhere", "unique_consecutive"}
#: Joining tensors: a 0-dim host tensor is an error beside device tensors here, not a scalar.
JOINS = {"cat", "stack", "concatenate", "concat", "hstack", "vstack"}


def _tensors(obj, out):
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _tensors(o, out)
    elif isinstance(obj, dict):
        for o in obj.values():
            _tensors(o, out)
    return out


def _site() -> "str | None":
    """``file:line`` of the nearest zfcore frame that made the call, or None (a call made by the
    test, or inside torch's optimiser or data loader)."""
    f = sys._getframe(2)
    while f is not None:
        name = f.f_code.co_filename.replace("\\", "/")
        if "/torch/optim/" in name or "/torch/utils/data/" in name:
            return None
        if "/zfcore/" in name:
            return f"{name.rsplit('/zfcore/', 1)[1]}:{f.f_lineno}"
        f = f.f_back
    return None


class DeviceAudit(TorchFunctionMode):
    """``with DeviceAudit() as audit: <engine call>``; then ``audit.syncs`` and ``audit.mixes``
    (lists of ``(site, operation)``) and :meth:`summary`."""

    def __init__(self):
        super().__init__()
        self.device = WeakIdKeyDictionary()
        self.host_devices: dict[int, torch.device] = {}  # .device objects read from host tensors
        self.syncs: list[tuple[str, str]] = []
        self.mixes: list[tuple[str, str]] = []

    def on_device(self, t: torch.Tensor) -> bool:
        return isinstance(t, nn.Parameter) or t in self.device

    def _device_object(self, d) -> bool:
        return isinstance(d, torch.device) and id(d) not in self.host_devices

    def _mark(self, out) -> None:
        for t in _tensors(out, []):
            self.device[t] = True

    def _event(self, kind: list, name: str) -> None:
        site = _site()
        if site is not None:
            kind.append((site, name))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name == "__get__":  # attribute reads (shape, device, .T, .grad, ...)
            out = func(*args, **kwargs)
            owner = args[0] if args and isinstance(args[0], torch.Tensor) else None
            if owner is not None and isinstance(out, torch.Tensor) and self.on_device(owner):
                self._mark(out)
            elif owner is not None and isinstance(out, torch.device) and not self.on_device(owner):
                self.host_devices[id(out)] = out
            return out
        ins = _tensors(args, []) + _tensors(kwargs, [])
        dev = [t for t in ins if self.on_device(t)]
        host = [t for t in ins if not self.on_device(t)]
        out = func(*args, **kwargs)
        if name in ("to", "cpu", "cuda"):
            target = kwargs.get("device")
            if target is None and name == "to":
                target = next(
                    (a for a in args[1:] if isinstance(a, (str, torch.device, torch.Tensor))), None
                )
            to_host = (
                name == "cpu" or isinstance(target, str) and torch.device(target).type == "cpu"
            )
            to_device = not to_host and (
                name == "cuda"
                or self._device_object(target)
                or isinstance(target, torch.Tensor)
                and self.on_device(target)
            )
            if out is args[0] and (to_host and dev or to_device and not dev):
                out = out.clone()  # a move between host and device makes a new tensor
            if to_host:
                if dev and not kwargs.get("non_blocking", False):
                    self._event(self.syncs, f"{name} to the host")
                return out
            if to_device or dev:
                self._mark(out)
            return out
        if self._device_object(kwargs.get("device")):  # a factory on the model's device
            self._mark(out)
            return out
        if not dev:
            return out
        if name in READS:
            self._event(self.syncs, name)
        elif (
            name in DATA_SIZED
            or name in ("__getitem__", "__setitem__")
            and any(t.dtype == torch.bool and self.on_device(t) for t in _tensors(args[1:2], []))
        ):
            self._event(self.syncs, f"{name} (size read from the device)")
        if name in ("copy_", "__setitem__") and not self.on_device(ins[0]):
            if not (name == "copy_" and kwargs.get("non_blocking", False)):
                self._event(self.syncs, f"{name}: a device value written into host memory")
            return out
        if any(t.dim() > 0 or name in JOINS for t in host):
            self._event(self.mixes, name)
        self._mark(out)
        if name.endswith("_") and not name.startswith("__") and ins:
            self._mark(ins[0])
        return out

    def summary(self) -> str:
        """The events by site, most frequent first, one per line."""
        lines = []
        for label, events in (("sync", self.syncs), ("mix", self.mixes)):
            for (site, op), n in Counter(events).most_common():
                lines.append(f"{label} x{n}: {op} at {site}")
        return "\n".join(lines) or "none"
