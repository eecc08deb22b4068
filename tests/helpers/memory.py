"""Peak memory of a piece of work, measured in a forked child (Linux).

``tracemalloc`` does not see torch's allocations, so this measures the resident set size: the
child resets its high-water mark (``/proc/self/clear_refs``), runs the work, and reports
``VmHWM - VmRSS(before)`` in MB. Running in a fork keeps the parent's memory out of the
measurement's way and gives every measurement the same starting state.

Also writes folders of generated photos (the procedural scenes, JPEG) for the measurements.
"""

from __future__ import annotations

import json
import os
import re
import time
import traceback
from pathlib import Path
from typing import Any, Callable


def available() -> bool:
    return hasattr(os, "fork") and os.access("/proc/self/clear_refs", os.W_OK)


def _status_kb(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


#: glibc's ``M_MMAP_THRESHOLD`` (``mallopt`` parameter -3) and its default value, 128 KiB.
_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES = -3, 128 * 1024


def _pin_mmap_threshold() -> None:
    """Serve every allocation above 128 KiB from its own ``mmap``, returned to the system on free.

    glibc raises this threshold after the first large block is freed (up to 32 MB), after which a
    batch of images comes from the heap instead; small objects allocated between two batches then
    keep the heap from shrinking, and the peak grows by a few MB per thousand images although the
    work holds nothing (seen in CI: 5.7 MB for 560 photos, with 1.4 MB held). Pinning the
    threshold makes the measurement count what the work holds, not how the heap fragments.
    """
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def _release_free_heap() -> None:
    """Give the heap's free pages back (glibc ``malloc_trim``), so memory the work reuses from
    earlier, freed allocations counts as growth instead of hiding in already-resident pages."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_growth_mb(
    work: Callable[[], Any], warmup: Callable[[], Any] | None = None
) -> tuple[float, float, Any]:
    """``(peak RSS growth in MB, seconds, work's JSON-able result)`` of ``work()`` in a fork.

    ``warmup`` runs in the child first, unmeasured: a forked child faults the shared libraries'
    code pages back in as it first runs them (tens of MB for torch's kernels), which is not
    memory the work holds; a small version of the same work brings them in. Free heap pages are
    then returned to the system, so the peak counts every page the work itself touches. Large
    blocks are kept out of the heap (:func:`_pin_mmap_threshold`). Call with torch limited to one
    thread (``torch.set_num_threads(1)``, as ``tests/conftest.py`` does): forking a process whose
    thread pool is running can hang the child.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            _pin_mmap_threshold()
            if warmup is not None:
                warmup()
            _release_free_heap()
            Path("/proc/self/clear_refs").write_text("5")
            base = _status_kb("VmRSS")
            t0 = time.perf_counter()
            out = work()
            secs = time.perf_counter() - t0
            msg = {"mb": (_status_kb("VmHWM") - base) / 1024, "s": secs, "out": out}
        except BaseException:
            msg, code = {"error": traceback.format_exc()}, 1
        with os.fdopen(w, "w") as f:
            f.write(json.dumps(msg))
        os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    msg = json.loads(data) if data else {"error": "the child died without a word"}
    if "error" in msg:
        raise RuntimeError(f"measurement failed in the child:\n{msg['error']}")
    return msg["mb"], msg["s"], msg["out"]


def write_scene_photos(
    folder: Path,
    n: int,
    size: int,
    start: int = 0,
    quality: int = 90,
    batch: int = 500,
    progress: bool = False,
) -> Path:
    """``n`` procedural scenes as JPEG files ``scene_<index>.jpg`` (files already there are
    kept)."""
    import numpy as np
    from PIL import Image

    from zfcore.data import render_scenes

    folder.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(start, start + n) if not (folder / f"scene_{i:06d}.jpg").is_file()]
    from tqdm.auto import tqdm

    for s in tqdm(range(0, len(todo), batch), desc="writing photos", disable=not progress):
        ids = todo[s : s + batch]
        imgs = render_scenes(ids, size=size, split="test").images
        arr = (imgs.clamp(0, 1) * 255).round().to(dtype=__import__("torch").uint8)
        arr = arr.permute(0, 2, 3, 1).numpy()
        for i, a in zip(ids, arr):
            Image.fromarray(np.ascontiguousarray(a)).save(
                folder / f"scene_{i:06d}.jpg", quality=quality
            )
    return folder
