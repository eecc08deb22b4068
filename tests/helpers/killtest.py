"""Kill a real process while it writes, many times, and check that every file is still whole.

A child process (``os.fork`` of the test process, so no interpreter start-up per kill) rewrites
three files in a loop through zfcore's atomic writers: a checksummed tensor file
(:func:`zfcore.cache.save_tensors`, as used for checkpoints and cache entries), a JSON file
(:func:`zfcore.cache.atomic_write_json`, as used by ``Report.save``) and a PNG figure
(:func:`zfcore.cache.atomic_savefig`, as used by ``Report.savefig``). Every version is
self-checking: it carries its generation number and a checksum of its own payload. The parent
sends ``SIGKILL``

* at random moments (:func:`random_kills`), and
* exactly at every boundary of the write protocol (:func:`boundary_kills`): just before and
  just after every ``fsync`` and every ``os.replace`` of a write cycle,

then checks that each file loads (``load_tensors`` with its checksum, ``json.loads``, a full
PNG decode), is internally consistent, and never went back to an older generation. The same
harness run with a naive writer (``open(path, "wb").write``) finds corrupt files
(:func:`naive_control`), so the check can fail.

Run it alone for the report's numbers::

    python tests/helpers/killtest.py --kills 200
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("tensors", "json", "figure")
FILES = {"tensors": "state.pt", "json": "numbers.json", "figure": "figure.png"}
_TENSOR_N = 250_000  # 1 MB of float32: the file write, not the pickling, dominates


# --- what the child writes ---------------------------------------------------------------------


def _payload(gen: int) -> list[int]:
    return [(gen * 7919 + i * 104729) % 1_000_003 for i in range(5000)]


def write(folder: Path, kind: str, gen: int, naive: bool = False) -> None:
    """Write generation ``gen`` of file ``kind`` with zfcore's writer (or a naive one)."""
    import torch

    from zfcore import cache

    path = folder / FILES[kind]
    if kind == "tensors":
        obj = {
            "gen": gen,
            "w": torch.full((_TENSOR_N,), float(gen)),
            "digest": hashlib.sha256(str(gen).encode()).hexdigest(),
        }
        if naive:
            buf = io.BytesIO()
            torch.save(obj, buf)
            _naive_write(path, buf.getvalue())
        else:
            cache.save_tensors(path, obj)
    elif kind == "json":
        values = _payload(gen)
        obj = {"gen": gen, "values": values, "sum": sum(values)}
        if naive:
            _naive_write(path, json.dumps(obj).encode())
        else:
            cache.atomic_write_json(path, obj)
    else:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1, 2], [gen % 3, 1, gen % 5])
        ax.set_title(f"generation {gen}")
        meta = {"Description": f"gen={gen}"}
        if naive:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=60, metadata=meta)
            _naive_write(path, buf.getvalue())
        else:
            cache.atomic_savefig(fig, path, dpi=60, bbox_inches=None, metadata=meta)
        plt.close(fig)


def _naive_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:  # what most code does: truncate, then write
        for i in range(0, len(data), 1 << 16):
            f.write(data[i : i + (1 << 16)])
            f.flush()


# --- what the parent checks --------------------------------------------------------------------


def check(folder: Path, kind: str) -> tuple[bool, int | None, str]:
    """``(whole, generation, problem)`` of one file after a kill."""
    path = folder / FILES[kind]
    try:
        if kind == "tensors":
            from zfcore import cache

            obj = cache.load_tensors(path)
            gen = int(obj["gen"])
            ok = (
                bool((obj["w"] == float(gen)).all())
                and obj["w"].numel() == _TENSOR_N
                and obj["digest"] == hashlib.sha256(str(gen).encode()).hexdigest()
            )
            return ok, gen, "" if ok else "inconsistent tensors"
        if kind == "json":
            obj = json.loads(path.read_text())
            gen = int(obj["gen"])
            ok = obj["values"] == _payload(gen) and obj["sum"] == sum(obj["values"])
            return ok, gen, "" if ok else "inconsistent json"
        from PIL import Image

        with Image.open(path) as img:
            img.load()  # a full decode: a truncated PNG fails here
            gen = int(img.info["Description"].split("=")[1])
            ok = img.size == (180, 120)
        return ok, gen, "" if ok else f"wrong size {img.size}"
    except Exception as e:  # noqa: BLE001 - any failure to read back is a corrupt file
        return False, None, f"{type(e).__name__}: {str(e)[:120]}"


# --- the harness ---------------------------------------------------------------------------------


@dataclass
class KillReport:
    kills: int = 0
    files_checked: int = 0
    corrupt: int = 0
    rolled_back: int = 0
    mid_write: int = 0  # kills that left a temporary file behind: they hit a write
    writes_completed: int = 0  # generations the children finished, summed
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"kills={self.kills} files_checked={self.files_checked} corrupt={self.corrupt} "
            f"rolled_back={self.rolled_back} kills_mid_write={self.mid_write} "
            f"writes_completed={self.writes_completed}"
        )


def prepare(folder: Path, naive: bool = False) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        write(folder, kind, 0, naive)
    return {k: 0 for k in KINDS}


def _child(folder: Path, start_gen: int, naive: bool, hook=None) -> None:
    """Runs in the forked child: rewrite the three files forever (until killed)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if hook is not None:
            hook()
        gen = start_gen
        while True:
            for kind in KINDS:
                write(folder, kind, gen, naive)
            gen += 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(1)


def _spawn(folder: Path, start_gen: int, naive: bool, hook=None) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child never returns
        _child(folder, start_gen, naive, hook)
    return pid


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _inspect(folder: Path, last: dict[str, int], rep: KillReport) -> None:
    temps = [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    rep.mid_write += bool(temps)
    for p in temps:  # leftovers of the killed write
        p.unlink()
    for kind in KINDS:
        ok, gen, problem = check(folder, kind)
        rep.files_checked += 1
        if not ok:
            rep.corrupt += 1
            rep.problems.append(f"kill {rep.kills}: {FILES[kind]}: {problem}")
            continue
        if gen < last[kind]:
            rep.rolled_back += 1
            rep.problems.append(f"kill {rep.kills}: {FILES[kind]} went back to generation {gen}")
        rep.writes_completed += max(0, gen - last[kind])
        last[kind] = gen


def cycle_seconds(folder: Path, repeats: int = 3) -> float:
    """How long the child takes for one round of the three writes (to spread the kills)."""
    t0 = time.perf_counter()
    for i in range(repeats):
        for kind in KINDS:
            write(folder, kind, 0)
    return (time.perf_counter() - t0) / repeats


def random_kills(folder: Path, kills: int = 200, seed: int = 0, naive: bool = False) -> KillReport:
    """SIGKILL the writing child ``kills`` times, each after a random delay of up to a little
    more than one write cycle (the cycle repeats, so that covers every moment of it), checking
    every file after each kill."""
    rng = random.Random(seed)
    last = prepare(folder, naive)
    span = 1.2 * cycle_seconds(folder)
    prepare(folder, naive)
    rep = KillReport()
    gen = 1
    for _ in range(kills):
        pid = _spawn(folder, gen, naive)
        time.sleep(rng.uniform(0.0, span))
        _kill(pid)
        rep.kills += 1
        _inspect(folder, last, rep)
        gen = max(last.values()) + 1
    return rep


def boundary_kills(folder: Path) -> KillReport:
    """SIGKILL the child exactly before and after every ``fsync`` and ``os.replace`` of one
    write cycle (the moments a non-atomic protocol would leave a broken file)."""
    last = prepare(folder)
    rep = KillReport()
    gen = 1
    # count the calls of one cycle
    counts = {"fsync": 0, "replace": 0}
    real = {"fsync": os.fsync, "replace": os.replace}

    def counting(name):
        def f(*a, **k):
            counts[name] += 1
            return real[name](*a, **k)

        return f

    os.fsync, os.replace = counting("fsync"), counting("replace")
    try:
        for kind in KINDS:
            write(folder, kind, 0)
    finally:
        os.fsync, os.replace = real["fsync"], real["replace"]
    prepare(folder)

    for name in ("fsync", "replace"):
        for nth in range(1, counts[name] + 1):
            for when in ("before", "after"):
                r, w = os.pipe()

                def hook(name=name, nth=nth, when=when, w=w):
                    seen = [0]
                    orig = getattr(os, name)

                    def stop():
                        os.write(w, b"!")
                        time.sleep(60)  # wait here to be killed

                    def patched(*a, **k):
                        seen[0] += 1
                        if seen[0] == nth and when == "before":
                            stop()
                        out = orig(*a, **k)
                        if seen[0] == nth and when == "after":
                            stop()
                        return out

                    setattr(os, name, patched)

                pid = _spawn(folder, gen, False, hook)
                os.close(w)
                got = os.read(r, 1)  # the child is at the boundary
                os.close(r)
                _kill(pid)
                rep.kills += 1
                if got != b"!":
                    rep.problems.append(f"{when} {name} #{nth}: the child never got there")
                _inspect(folder, last, rep)
                gen = max(last.values()) + 1
    return rep


def naive_control(folder: Path, kills: int = 30, seed: int = 1) -> KillReport:
    """The same random kills against a naive writer: it must leave corrupt files."""
    return random_kills(folder, kills, seed, naive=True)


if __name__ == "__main__":
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        r = random_kills(Path(d) / "random", args.kills, args.seed)
        print("random  ", r.line(), f"({time.perf_counter() - t0:.1f} s)")
        b = boundary_kills(Path(d) / "boundary")
        print("boundary", b.line())
        n = naive_control(Path(d) / "naive", 30)
        print("naive   ", n.line())
        for p in (r.problems + b.problems)[:10]:
            print("  ", p)
