"""Ready for the first GPU: every accelerated path checked against the CPU and measured, in one
command, within a few minutes of a cold start.

    python -m benchmarks.gpu                 # the best device present: cuda if available, else cpu
    python -m benchmarks.gpu --budget-s 300  # a shorter lease
    python -m benchmarks.gpu --quick         # every part at a tiny size, seconds on a CPU (CI)

Each part runs on the device and checks it against the CPU (where the device is the CPU, the CPU
is its own reference: the two code paths still run and must agree, which checks determinism and
the DDP path), then times our code against its peer on the same device:

* ``train``: steps of ``mini`` (``--quick``: ``tiny``) through ``zfcore.train.train`` on the
  device, in bfloat16 where the device has it natively (the ``bf16`` recipe), against the same
  steps, batches and initial weights in float32 on the CPU. Tolerances: the first step's loss
  within 2 % (same weights, same batch: only rounding differs) and the loss curve, smoothed over 20
  steps, within 5 % on average (bfloat16 keeps 8 bits of mantissa, so two runs drift apart step
  by step and only the curve's level and trend can agree); identical arithmetic on the same
  device must agree to 1e-6. Images/s of the trainer and of a bare loop over batches already on
  the device (how well the data keeps the device busy), the share of the steps' time spent
  waiting for data, GPU utilisation where pynvml is installed. Then the same run of N steps
  through ``torchrun --nproc_per_node=1`` (one-process DistributedDataParallel, NCCL on CUDA,
  gloo on CPU) must end with the weights of the plain run: to 1e-6 of the largest weight on the
  CPU (one process averages nothing: expected bit for bit), 1e-3 on CUDA (deterministic
  algorithms on; the margin covers the few kernels without a deterministic version).
* ``projection``: ``project`` (deconvnet, guided, gradient) on the device against the CPU to
  1e-4 of the largest value; projections/s against Captum's ``Deconvolution``,
  ``GuidedBackprop`` and ``Saliency`` on the same device, each at its best chunking, on the
  model without normalisation layers (Captum cannot pass them through).
* ``occlusion``: exact and fast (``mode="fast"``: bfloat16 changes where native) on the device
  against the CPU's exact map (max |dp(class)|: exact 1e-4, fast 0.01), speed-ups against Captum's
  ``Occlusion`` at its best ``perturbations_per_eval`` on ZF-mini and on AlexNet (224 px, He
  weights, scikit-image's cat), which decides the target of 10x Captum within max |dp| 0.01
  (undecided where bfloat16 is not native: the fast preset then runs exact).
* ``mining`` and ``features``: ``mine_topk`` and ``extract_features`` on the device against the
  CPU (values to 1e-4; mined images identical in 99 % of the slots at least), images/s and their
  cost against plain inference on the device.
* ``estimate``: the time ``make figures`` would take on this device from the measured rates
  (formula printed; what it leaves out too).

Budget by construction: a short warm-up measures each part's rates, step and image counts are
chosen to fit the part's share of ``--budget-s`` (default 480 s, first CUDA initialisation
included), and a guard stops any part that runs over, saying so. Every check's tolerance is
printed beside its value. Ends with ``RESULT gpu device=... checks_passed=... ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks._result import parse

ROOT = Path(__file__).resolve().parent.parent
#: Shares of the budget: training, projection, occlusion, mining and features; the rest is slack
#: for start-up, the reference runs' tails and the summary.
SHARES = {"train": 0.42, "projection": 0.12, "occlusion": 0.24, "mining": 0.08}
TRAIN_FIRST_STEP_TOL = 0.02
TRAIN_CURVE_TOL = 0.05
TRAIN_SAME_TOL = 1e-6
SMOOTH = 20
DDP_TOL = {"cpu": 1e-6, "cuda": 1e-3}
MATCH_TOL = 1e-4
FAST_MAX_DP = 0.01
TEN_X = 10.0


# ---------------------------------------------------------------------------------------------
# Budget, checks, timing
# ---------------------------------------------------------------------------------------------


class OutOfTime(Exception):
    """A part ran past its share of the budget (raised from inside its loops)."""


@dataclass
class Part:
    name: str
    deadline: float
    notes: list = field(default_factory=list)

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def check_time(self) -> None:
        if time.perf_counter() > self.deadline:
            raise OutOfTime(self.name)

    def stopped(self, what: str) -> None:
        self.notes.append(f"{what}: stopped early by the time guard")
        print(f"  [time guard] {self.name}: {what} stopped early")


@dataclass
class Check:
    part: str
    name: str
    value: float
    tolerance: float
    passed: bool
    detail: str = ""


class Report:
    def __init__(self):
        self.checks: list[Check] = []
        self.values: dict = {}

    def check(self, part, name, value, tolerance, detail="") -> bool:
        ok = bool(value <= tolerance) if math.isfinite(value) else False
        self.checks.append(Check(part, name, float(value), float(tolerance), ok, detail))
        print(
            f"  check {name}: {value:.3g} (tolerance {tolerance:g}) {'ok' if ok else 'FAILED'}"
            + (f"  [{detail}]" if detail else "")
        )
        return ok


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_times(fns: dict, repeats: int, device: torch.device, part: Part) -> dict:
    """Best wall time of each function (warmed up once, then interleaved ``repeats`` times; the
    device is synchronised around each call). Functions not reached in time are left out."""
    best = {}
    for name, fn in fns.items():
        if part.left() <= 0:
            part.stopped(f"timing of {name}")
            break
        best[name] = timed(fn, device)  # the warm-up, a first (slow) measure
    for _ in range(repeats):
        for name in list(best):
            if part.left() <= 0:
                return best
            sync(device)
            t0 = time.perf_counter()
            fns[name]()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def timed(fn, device: torch.device) -> float:
    """Seconds of one call of ``fn`` on ``device``."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def fit(n_max: int, unit: int, cost_per_item: float, seconds: float) -> int:
    """The most items, a multiple of ``unit`` between ``unit`` and ``n_max``, whose estimated
    cost fits in ``seconds``."""
    n = int(seconds / max(cost_per_item, 1e-9)) // unit * unit
    return max(unit, min(n_max, n))


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (both moved to the CPU, in double)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


@contextlib.contextmanager
def deterministic(device: torch.device):
    """Deterministic kernels for a comparison of weights (not for timing)."""
    was = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = was[1], was[2]


class Utilisation:
    """GPU utilisation sampled in a thread while a block runs (needs pynvml), else None."""

    def __init__(self, device: torch.device):
        self.device, self.samples, self._stop = device, [], threading.Event()
        self.available = False
        if device.type == "cuda":
            try:
                torch.cuda.utilization(device)
                self.available = True
            except Exception:  # pynvml missing or NVML unavailable
                pass

    def __enter__(self):
        if self.available:

            def sample():
                while not self._stop.wait(0.2):
                    self.samples.append(torch.cuda.utilization(self.device))

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.available:
            self._stop.set()
            self._thread.join()

    @property
    def mean(self) -> "float | None":
        return statistics.mean(self.samples) if self.samples else None


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def train_spec(profile: str, steps: int, device: str, precision: str, cache_dir: str):
    from zfcore import train as T

    p = T.make_spec(profile).profile
    return T.make_spec(
        profile,
        epochs=1,
        n_train=steps * p.batch_size,
        n_val=p.batch_size,
        device=device,
        precision=precision,
        cache_dir=cache_dir,
    )


def run_steps(spec, part: "Part | None" = None) -> tuple[list[float], object]:
    """Train ``spec`` (one epoch in a fresh cache) and return the per-step losses and the run;
    the time guard may end it early (the losses so far, run None)."""
    from zfcore import train as T

    losses = []

    def on_step(step, loss):
        losses.append(loss)
        if part is not None and step % 5 == 0:
            part.check_time()

    try:
        run = T.train(spec, progress=False, on_step=on_step)
    except OutOfTime:
        run = None
    return [float(v) for v in torch.stack(losses).cpu()] if losses else [], run


def smooth(v: list[float], w: int) -> list[float]:
    return [statistics.mean(v[max(0, i - w + 1) : i + 1]) for i in range(len(v))]


def step_seconds(spec, device: torch.device, steps: int) -> float:
    """Seconds per training step of ``spec`` on ``device`` over a batch already there (a bare
    loop: the trainer's arithmetic without its data path)."""
    from zfcore import train as T

    ips = T.compare_throughput(spec.profile, {"bare": ()}, steps=steps, rounds=1, device=device)
    return spec.profile.batch_size / ips["bare"]


def torchrun_command() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    launcher = [str(exe)] if exe.is_file() else [sys.executable, "-m", "torch.distributed.run"]
    return launcher + ["--standalone", "--nproc_per_node=1"]


def ddp_worker(args) -> int:
    """Under torchrun: join the process group (NCCL on CUDA, gloo on CPU) and train the run the
    parent trained plainly; the trainer wraps the model in DistributedDataParallel."""
    import torch.distributed as dist

    from zfcore import train as T

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    try:
        spec = train_spec(args.profile, args.steps, args.device, args.precision, args.cache_dir)
        with deterministic(device):
            T.train(spec, progress=False)
        print(f"ddp worker: {backend}, world {dist.get_world_size()}, trained {args.steps} steps")
    finally:
        dist.destroy_process_group()
    return 0


def part_train(rep: Report, part: Part, device: torch.device, quick: bool, threads: int) -> dict:
    from zfcore.incremental import low_precision_is_fast
    from zfcore.train import CheckpointStore

    profile = "tiny" if quick else "mini"
    precision = "bf16" if low_precision_is_fast(device) else "fp32"
    cpu = torch.device("cpu")
    out = {"precision": precision, "profile": profile}
    with tempfile.TemporaryDirectory() as tmp:
        probe = train_spec(profile, 4, device.type, precision, tmp)
        t_dev = step_seconds(probe, device, 2 if quick else 4)
        t_cpu = (
            t_dev
            if device == cpu and precision == "fp32"
            else step_seconds(train_spec(profile, 4, "cpu", "fp32", tmp), cpu, 1 if quick else 2)
        )
        bare_ips = probe.profile.batch_size / t_dev
        # device run + CPU run of S steps, then two runs of N steps (plain and torchrun), with
        # room for rendering, validation and the torchrun start (about 20 s)
        room = part.left() - (5 if quick else 30)
        steps = 4 if quick else int(max(20, min(300, room * 0.6 / (t_dev + t_cpu))))
        n_ddp = 3 if quick else int(max(5, min(50, room * 0.25 / (2 * t_dev))))
        print(
            f"\n== train: {profile}, {precision} on {device.type} against fp32 on the CPU; "
            f"{steps} steps (warm-up: {t_dev * 1e3:.0f} ms/step on the device, "
            f"{t_cpu * 1e3:.0f} ms/step on the CPU), DDP check over {n_ddp} steps"
        )
        spec = train_spec(profile, steps, device.type, precision, tmp + "/device")
        with Utilisation(device) as util:
            dev_losses, run = run_steps(spec, part)
        if run is None:
            part.stopped(f"device training after {len(dev_losses)} of {steps} steps")
            ips = wait_share = float("nan")
        else:
            ips, wait_share = (
                run.final.images_per_s,
                run.final.data_seconds / run.final.train_seconds,
            )
        ref_losses, _ = run_steps(train_spec(profile, steps, "cpu", "fp32", tmp + "/cpu"), part)
        n = min(len(dev_losses), len(ref_losses))
        if n < len(dev_losses):
            part.stopped(f"CPU reference after {n} of {steps} steps")
        same = device == cpu and precision == "fp32"
        first = abs(dev_losses[0] - ref_losses[0]) / abs(ref_losses[0]) if n else float("nan")
        w = min(SMOOTH, max(1, n // 5))
        a, b = smooth(dev_losses[:n], w), smooth(ref_losses[:n], w)
        curve = (
            sum(abs(x - y) for x, y in zip(a, b)) / max(sum(abs(y) for y in b), 1e-30)
            if n
            else float("nan")
        )
        rep.check(
            "train",
            "first-step loss, device vs CPU (relative)",
            first,
            TRAIN_SAME_TOL if same else TRAIN_FIRST_STEP_TOL,
        )
        rep.check(
            "train",
            f"loss curve smoothed over {w} steps, mean relative difference",
            curve,
            TRAIN_SAME_TOL if same else TRAIN_CURVE_TOL,
            f"{n} steps; loss {ref_losses[0]:.3f} -> {b[-1]:.3f} on the CPU, "
            f"{a[-1]:.3f} on the device"
            if n
            else "no steps",
        )
        util_mean = util.mean
        print(
            f"  trainer: {ips:.0f} images/s on the device; bare loop over batches already there: "
            f"{bare_ips:.0f} images/s (trainer at {ips / bare_ips:.2f}x of it); waiting for data: "
            f"{100 * wait_share:.1f} % of the steps' time; GPU utilisation: "
            + (
                f"{util_mean:.0f} %"
                if util_mean is not None
                else "not sampled (pynvml not installed)"
                if device.type == "cuda"
                else "n/a (CPU)"
            )
        )
        out.update(
            steps=n,
            images_per_s=ips,
            bare_images_per_s=bare_ips,
            wait_share=wait_share,
            utilisation=util_mean,
            first=first,
            curve=curve,
            cpu_images_per_s=probe.profile.batch_size / t_cpu,
        )

        # one-process DDP through torchrun against the plain run of the same steps
        if part.left() < (3 if quick else 20):
            part.stopped("the torchrun DDP check")
            out["ddp"] = float("nan")
            return out
        plain_spec = train_spec(profile, n_ddp, device.type, precision, tmp + "/plain")
        with deterministic(device):
            _, plain = run_steps(plain_spec)
        ddp_dir = tmp + "/ddp"
        cmd = torchrun_command() + [
            "-m",
            "benchmarks.gpu",
            "--ddp-worker",
            "--profile",
            profile,
            "--steps",
            str(n_ddp),
            "--device",
            device.type,
            "--precision",
            precision,
            "--cache-dir",
            ddp_dir,
            "--threads",
            str(threads),
        ]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=max(10.0, part.left() + (10 if quick else 30)),
            )
            ok = proc.returncode == 0
            if not ok:
                print(proc.stdout[-1500:], proc.stderr[-3000:])
        except subprocess.TimeoutExpired:
            ok = False
            part.stopped("the torchrun DDP run")
        took = time.perf_counter() - t0
        if ok:
            a_state = CheckpointStore(plain.directory).load_weights(1.0)
            b_dir = train_spec(profile, n_ddp, device.type, precision, ddp_dir).entry()
            b_state = CheckpointStore(b_dir).load_weights(1.0)
            diff = max(rel_diff(b_state[k], a_state[k]) for k in a_state)
        else:
            diff = float("nan")
        rep.check(
            "train",
            f"torchrun --nproc_per_node=1 ({'nccl' if device.type == 'cuda' else 'gloo'}"
            f", DDP) weights after {n_ddp} steps vs the plain run (max |dw| / max |w|)",
            diff,
            DDP_TOL[device.type],
            f"torchrun run took {took:.0f} s",
        )
        out["ddp"] = diff
    return out


# ---------------------------------------------------------------------------------------------
# Projection
# ---------------------------------------------------------------------------------------------


def part_projection(rep: Report, part: Part, device: torch.device, quick: bool) -> dict:
    import copy

    from captum.attr import Deconvolution, GuidedBackprop, Saliency
    from torch import nn

    from zfcore.deconv import layer_activations, project, requests
    from zfcore.models import he_init_, zfnet
    from zfcore.profiles import get_profile

    p = get_profile("tiny" if quick else "mini")
    torch.manual_seed(0)
    model = he_init_(zfnet(**p.model_kwargs())).eval()
    n_maps, k = (4, 2) if quick else (64, 9)
    repeats = 1 if quick else 3
    if not quick:  # size the work from a probe: the gradient rule on 2 x 9 random requests
        xp = torch.randn(2 * k, 3, p.image_size, p.image_size)
        rp = requests(torch.arange(2 * k), 0)
        dm0, xp0 = copy.deepcopy(model).to(device), xp.to(device)
        per_dev = timed(lambda: project(dm0, xp0, "layer5", rp, rule="gradient"), device) / (2 * k)
        per_cpu = (
            per_dev
            if device.type == "cpu"
            else timed(
                lambda: project(model, xp, "layer5", rp, rule="gradient"), torch.device("cpu")
            )
            / (2 * k)
        )
        # per request: the CPU references, then on the device the checks (3 rules x 3 calls)
        # and the timings (3 rules x 5 arms x warm-up and repeats)
        cost = 3 * per_cpu + 3 * per_dev * (3 + 5 * (1 + repeats))
        n_maps = fit(n_maps * k, k, cost, 0.8 * part.left()) // k
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_maps * k, 3, p.image_size, p.image_size, generator=g)
    act = layer_activations(model, x, ["layer5"])["layer5"]
    n = n_maps * k
    chan = torch.arange(n_maps).repeat_interleave(k)
    flat_pos = act[torch.arange(n), chan].flatten(1).argmax(1)
    h, w = act.shape[-2:]
    req = requests(torch.arange(n), chan, flat_pos // w, flat_pos % w)
    dev_model = copy.deepcopy(model).to(device)
    xd = x.to(device)
    print(
        f"\n== projection: {n} layer-5 projections of {p.name} ({p.image_size} px), each rule on "
        f"{device.type} against the CPU, then against Captum on {device.type}"
    )
    out = {}
    for rule in ("deconvnet", "guided", "gradient"):
        ref = project(model, x, "layer5", req, rule=rule).pixels
        got = project(dev_model, xd, "layer5", req, rule=rule).pixels
        rep.check(
            "projection",
            f"{rule}: device vs CPU (max |diff| / max |value|)",
            rel_diff(got, ref),
            MATCH_TOL,
        )
    # Captum on the same device, on the model without normalisation layers
    plain = copy.deepcopy(model)
    plain.features.norm1, plain.features.norm2 = nn.Identity(), nn.Identity()
    plain = plain.to(device).eval()
    cut = [nm for nm, _ in plain.features.named_children()].index("relu5") + 1
    trunc = nn.Sequential(*list(plain.features.children())[:cut], nn.Flatten()).eval()
    flat = req.channel * h * w + req.y * w + req.x
    peers = {
        "deconvnet": Deconvolution(trunc),
        "guided": GuidedBackprop(trunc),
        "gradient": Saliency(trunc),
    }
    chunks = sorted({min(c, n) for c in ((8,) if quick else (64, 256, n))})

    def captum(rule, chunk):
        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kw = {"abs": False} if rule == "gradient" else {}
                return torch.cat(
                    [
                        peers[rule].attribute(xd[idx.to(device)], target=flat[idx].tolist(), **kw)
                        for idx in torch.split(torch.arange(n), chunk)
                    ]
                )

        return run

    for rule in ("deconvnet", "guided", "gradient"):
        ours = project(plain, xd, "layer5", req, rule=rule, scale="unit").pixels
        rep.check(
            "projection",
            f"{rule}: ours vs Captum on {device.type} (max |diff| / max |value|)",
            rel_diff(ours, captum(rule, chunks[-1])()),
            MATCH_TOL,
        )
        fns = {
            f"ours_{bs}": (
                lambda bs=bs: project(
                    plain, xd, "layer5", req, rule=rule, scale="unit", batch_size=bs
                )
            )
            for bs in sorted({min(b, n) for b in (64, 256)})
        }
        fns.update({f"captum_{c}": captum(rule, c) for c in chunks})
        t = best_times(fns, repeats, device, part)
        ours_t = min((v for kk, v in t.items() if kk.startswith("ours")), default=float("nan"))
        theirs_t = min((v for kk, v in t.items() if kk.startswith("captum")), default=float("nan"))
        out[rule] = dict(per_s=n / ours_t, captum_per_s=n / theirs_t, speedup=theirs_t / ours_t)
        print(
            f"  {rule}: {n / ours_t:.0f} projections/s, Captum {n / theirs_t:.0f}/s at its best "
            f"chunking: {theirs_t / ours_t:.2f}x"
        )
    return out


# ---------------------------------------------------------------------------------------------
# Occlusion
# ---------------------------------------------------------------------------------------------


def part_occlusion(rep: Report, part: Part, device: torch.device, quick: bool) -> dict:
    import copy

    from benchmarks.occlusion import captum_runner
    from zfcore.data import get_dataset
    from zfcore.data.images import sample_photos
    from zfcore.incremental import low_precision_is_fast
    from zfcore.models import alexnet, he_init_, zfnet
    from zfcore.occlusion import occlude, pixel_attribution, window_positions
    from zfcore.profiles import get_profile

    native = low_precision_is_fast(device)
    p = get_profile("tiny" if quick else "mini")
    zf = he_init_(zfnet(**p.model_kwargs())).eval()
    zimg = get_dataset(p, "test")[0][0]
    torch.manual_seed(0)
    alex = he_init_(alexnet(pretrained=False)).eval()
    aimg = sample_photos("imagenet", ["cat"]).images[0]
    if quick:  # AlexNet's adaptive pool takes a smaller photo
        aimg = torch.nn.functional.interpolate(aimg[None], size=(128, 128), mode="bilinear")[0]
    # (window, stride) pairs, finest first: the finest whose estimated cost fits the setting's
    # share is taken (Captum needs stride <= window and a stride dividing size - window)
    settings = [
        (
            "zf-" + p.name,
            zf,
            zimg,
            [(16, 8), (32, 16)] if quick else [(16, 4), (16, 8), (16, 16), (32, 16)],
            [64] if quick else [16, 64, 128, 256],
        ),
        (
            "alexnet",
            alex,
            aimg,
            [(32, 32), (64, 64)] if quick else [(16, 8), (16, 16), (32, 32), (56, 56)],
            [64] if quick else [16, 64, 128, 256],
        ),
    ]
    repeats, cpu = 1 if quick else 2, torch.device("cpu")
    print(
        f"\n== occlusion: exact and fast on {device.type} against the CPU's exact map; "
        f"against Captum's Occlusion on {device.type} (bfloat16 native here: "
        f"{'yes' if native else 'no, so the fast preset runs exact'})"
    )
    out = {}
    for i, (name, model, image, grids, ppes) in enumerate(settings):
        if part.left() <= 0:
            part.stopped(f"occlusion of {name}")
            break
        with torch.no_grad():
            target = int(model(image[None]).argmax())
        dm, di = copy.deepcopy(model).to(device), image.to(device)
        # per-position costs on the coarsest grid size the work
        allowance = part.left() * (0.45 if i == 0 else 0.9)
        count = lambda g: len(window_positions(image.shape[-1], *g)) ** 2  # noqa: E731
        window, stride = grids[-1]
        coarse = dict(window=window, stride=stride, fill="mean", batch_size=128)
        n0 = count(grids[-1])
        c_ref = timed(lambda: occlude(model, image, target, **coarse), cpu) / n0
        c_dev = timed(lambda: occlude(dm, di, target, **coarse), device) / n0
        c_cap = timed(captum_runner(dm, di, target, window, stride, ppes[-1]), device) / n0
        per = c_ref + c_dev * (2 + 2 * (1 + repeats)) + c_cap * (1 + len(ppes) * (1 + repeats))
        window, stride = next((g for g in grids if count(g) * per <= allowance), grids[-1])
        kw = dict(window=window, stride=stride, fill="mean", batch_size=128)
        ref = occlude(model, image, target, **kw)
        exact = occlude(dm, di, target, **kw)
        fast = occlude(dm, di, target, mode="fast", **kw)
        rep.check(
            "occlusion",
            f"{name}: exact on {device.type} vs CPU, max |dp|",
            float((exact.prob_target - ref.prob_target).abs().max()),
            MATCH_TOL,
        )
        rep.check(
            "occlusion",
            f"{name}: layer-5 map total, exact on {device.type} vs CPU (relative)",
            rel_diff(exact.feature_total, ref.feature_total),
            MATCH_TOL,
        )
        dp_fast = float((fast.prob_target - ref.prob_target).abs().max())
        rep.check(
            "occlusion",
            f"{name}: fast on {device.type} vs CPU exact, max |dp|",
            dp_fast,
            FAST_MAX_DP,
            f"{fast.precision}; "
            + (
                f"{100 * float(fast.rechecked.double().mean()):.0f} % rechecked in float32"
                if fast.rechecked is not None
                else "exact"
            ),
        )

        def captum(ppe):
            return captum_runner(dm, di, target, window, stride, ppe)

        rep.check(
            "occlusion",
            f"{name}: our exact map vs Captum's on {device.type} (max |diff|)",
            float((captum(ppes[-1])().cpu() - pixel_attribution(exact)).abs().max()),
            MATCH_TOL,
        )
        fns = {
            "exact": lambda: occlude(dm, di, target, **kw),
            "fast": lambda: occlude(dm, di, target, mode="fast", **kw),
            **{f"captum_ppe={q}": captum(q) for q in ppes},
        }
        t = best_times(fns, repeats, device, part)
        cap = {kk: v for kk, v in t.items() if kk.startswith("captum")}
        tuned = min(cap, key=cap.get) if cap else None
        positions = len(ref.rows) * len(ref.cols)
        res = dict(
            positions=positions,
            exact_s=t.get("exact", float("nan")),
            fast_s=t.get("fast", float("nan")),
            fast_max_dp=dp_fast,
            captum_s=cap[tuned] if tuned else float("nan"),
            tuned=tuned,
        )
        res["speedup_exact"] = res["captum_s"] / res["exact_s"]
        res["speedup_fast"] = res["captum_s"] / res["fast_s"]
        out[name] = res
        print(
            f"  {name}: window {window}, stride {stride}, {positions} positions; exact "
            f"{res['exact_s']:.3f} s, fast "
            f"{res['fast_s']:.3f} s, Captum at its best ({tuned}) {res['captum_s']:.3f} s: "
            f"exact {res['speedup_exact']:.2f}x, fast {res['speedup_fast']:.2f}x Captum"
        )
    a = out.get("alexnet")
    if a is None or not math.isfinite(a["speedup_fast"]):
        verdict = "undecided"
    elif not native:
        verdict = "undecided_no_native_bf16"
    else:
        verdict = (
            "met" if a["speedup_fast"] >= TEN_X and a["fast_max_dp"] <= FAST_MAX_DP else "missed"
        )
    out["ten_x"] = verdict
    print(
        f"  target 10x tuned Captum within max |dp| {FAST_MAX_DP} on AlexNet: {verdict}"
        + (f" ({a['speedup_fast']:.2f}x, max |dp| {a['fast_max_dp']:.1e})" if a else "")
    )
    return out


# ---------------------------------------------------------------------------------------------
# Mining and features
# ---------------------------------------------------------------------------------------------


def part_mining(rep: Report, part: Part, device: torch.device, quick: bool) -> dict:
    import copy

    from zfcore.features import LAYERS, extract_features
    from zfcore.mining import mine_topk
    from zfcore.models import forward_layers, he_init_, zfnet
    from zfcore.profiles import get_profile

    p = get_profile("tiny" if quick else "mini")
    model = he_init_(zfnet(**p.model_kwargs())).eval()
    n = 48 if quick else 1024
    bs = 16 if quick else 128
    repeats = 1 if quick else 3
    x = torch.randn(n, 3, p.image_size, p.image_size, generator=torch.Generator().manual_seed(1))
    y = torch.arange(n) % p.num_classes
    dm = copy.deepcopy(model).to(device)
    if not quick:  # size the work from one batch: two CPU references, then on the device two
        xb, cpu = x[:bs].to(device), torch.device("cpu")  # checks and 4 arms timed
        c_dev = (
            timed(
                lambda: extract_features(dm, (xb, y[:bs]), LAYERS, batch_size=bs, progress=False),
                device,
            )
            / bs
        )
        c_cpu = (
            c_dev
            if device.type == "cpu"
            else timed(
                lambda: extract_features(
                    model, (x[:bs], y[:bs]), LAYERS, batch_size=bs, progress=False
                ),
                cpu,
            )
            / bs
        )
        n = fit(n, bs, 2 * c_cpu + c_dev * (2 + 4 * (1 + repeats)), 0.8 * part.left())
        x, y = x[:n], y[:n]
    xd = x.to(device)
    print(
        f"\n== mining and features: {n} images of {p.name} ({p.image_size} px) on {device.type} "
        f"against the CPU"
    )
    ref = mine_topk(model, x, k=9, batch_size=bs, progress=False)
    got = mine_topk(dm, xd, k=9, batch_size=bs, progress=False)
    vals = max(rel_diff(got[l].values, ref[l].values) for l in ref.layers)
    same = sum(int((got[l].images == ref[l].images).sum()) for l in ref.layers)
    slots = sum(ref[l].images.numel() for l in ref.layers)
    rep.check("mining", "top-9 values, device vs CPU (relative)", vals, MATCH_TOL)
    rep.check(
        "mining", "top-9 slots whose image differs, device vs CPU (share)", 1 - same / slots, 0.01
    )
    fref = extract_features(model, (x, y), LAYERS, batch_size=bs, progress=False)
    fgot = extract_features(dm, (xd, y), LAYERS, batch_size=bs, progress=False)
    rep.check(
        "mining",
        "features of layers 1-7, device vs CPU (relative)",
        max(rel_diff(fgot[l], fref[l]) for l in LAYERS),
        MATCH_TOL,
    )
    batches = list(torch.split(xd, bs))

    def inference():
        with torch.inference_mode():
            for b in batches:
                forward_layers(dm, b, ["layer5"])

    fns = {
        "mining": lambda: mine_topk(dm, batches, k=9, progress=False),
        "inference_to_layer5": inference,
        "features": lambda: extract_features(dm, (xd, y), LAYERS, batch_size=bs, progress=False),
        "inference_full": lambda: [dm(b) for b in batches],
    }
    with torch.no_grad():
        t = best_times(fns, repeats, device, part)
    rate = {kk: n / v for kk, v in t.items()}
    out = dict(
        mining_per_s=rate.get("mining", float("nan")),
        features_per_s=rate.get("features", float("nan")),
        mining_overhead=t.get("mining", math.nan) / t.get("inference_to_layer5", math.nan),
        features_overhead=t.get("features", math.nan) / t.get("inference_full", math.nan),
    )
    print(
        f"  mining {out['mining_per_s']:.0f} images/s ({out['mining_overhead']:.2f}x inference "
        f"to layer 5); features {out['features_per_s']:.0f} images/s "
        f"({out['features_overhead']:.2f}x the whole forward pass)"
    )
    return out


# ---------------------------------------------------------------------------------------------
# The make figures estimate
# ---------------------------------------------------------------------------------------------


def figures_estimate(train: dict, occl: dict, mining: dict) -> tuple[float, str]:
    """Minutes ``make figures`` (the mini profile) would take on this device, from the measured
    rates, and the formula in words."""
    from zfcore.models import TABLE3_VARIANTS
    from zfcore.occlusion import default_window, window_positions
    from zfcore.paper.fig4_evolution import RECIPES
    from zfcore.paper.fig6_first_layer import RUN_KEYS
    from zfcore.profiles import get_profile
    from zfcore.train import EARLY_CHECKPOINTS, comparison_overrides

    p = get_profile("mini")
    seeds = getattr(p, "comparison_seeds", 1)
    cmp_epochs = comparison_overrides(p)["epochs"]
    # the zf arm of each comparison is the main model (or its prefix); the others train anew
    arms = (len(TABLE3_VARIANTS) - 1) + (len(RUN_KEYS) - 1) + 2 + (len(RECIPES) - 1)
    trained = p.n_train * (p.epochs + arms * cmp_epochs * seeds)
    mined = p.n_val * (2 + len(p.checkpoint_epochs) + len(EARLY_CHECKPOINTS))
    window, stride = default_window(p.image_size)
    per_image = len(window_positions(p.image_size, window, stride)) ** 2
    occluded = 2 * 500 * per_image  # notebook 07: 500 test images, trained and untrained
    zf = next((v for k, v in occl.items() if k.startswith("zf-")), {})
    pos_per_s = zf.get("positions", math.nan) / zf.get("exact_s", math.nan)
    ips = train.get("images_per_s", math.nan)
    seconds = trained / ips + mined / mining.get("mining_per_s", math.nan) + occluded / pos_per_s
    formula = (
        f"images trained {trained:,} (mini: {p.epochs} epochs of {p.n_train:,} + {arms} "
        f"comparison trainings x {cmp_epochs} epochs x {seeds} seed(s)) / {ips:.0f} images/s"
        f" + images mined {mined:,} (validation split x (trained, untrained, "
        f"{len(p.checkpoint_epochs) + len(EARLY_CHECKPOINTS)} checkpoints)) / "
        f"{mining.get('mining_per_s', math.nan):.0f} images/s + occluder positions "
        f"{occluded:,} (2 x 500 images x {per_image}) / {pos_per_s:.0f} positions/s; left "
        f"out: rendering the scenes, the transfer studies' small trainings and feature "
        f"extraction, the CPU-only analyses (probes, bootstraps), notebook start-up and "
        f"plotting"
    )
    return seconds / 60, formula


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="every part at a tiny size (CI)")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=480.0,
        help="seconds for the whole run, first CUDA initialisation included",
    )
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default: the mini profile's, else torch's)",
    )
    ap.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--profile", default="mini", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    args, record = parse(ap, argv, "gpu")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, if asked
    # exact float32 everywhere (TF32 would move the agreement checks by 1e-3); training's
    # bfloat16 comes from its recipe's autocast
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    if args.ddp_worker:
        return ddp_worker(args)
    t_start = time.perf_counter()
    from zfcore.profiles import get_profile

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # a GPU machine's CPU is the reference: all of its cores; on a CPU-only machine the profile's
    threads = args.threads or (
        (os.cpu_count() if device.type == "cuda" else None)
        or get_profile("mini").threads
        or torch.get_num_threads()
    )
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    torch.zeros(1, device=device)
    sync(device)
    init_s = time.perf_counter() - t0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device: {device} ({name}); torch {torch.__version__}; {threads} CPU threads; first "
        f"initialisation {init_s:.1f} s; budget {args.budget_s:.0f} s"
        + ("; quick" if args.quick else "")
    )
    if device.type == "cpu":
        print("no GPU here: the CPU is its own reference (both code paths run and must agree)")
    rep = Report()
    results, notes = {}, []
    plan = [
        ("train", lambda pt: part_train(rep, pt, device, args.quick, threads)),
        ("projection", lambda pt: part_projection(rep, pt, device, args.quick)),
        ("occlusion", lambda pt: part_occlusion(rep, pt, device, args.quick)),
        ("mining", lambda pt: part_mining(rep, pt, device, args.quick)),
    ]
    for key, fn in plan:
        now = time.perf_counter()
        share = SHARES[key] * args.budget_s
        remaining = args.budget_s - (now - t_start)
        part = Part(key, now + max(0.0, min(share, remaining - 10)))
        try:
            results[key] = fn(part)
        except OutOfTime:
            part.stopped(key)
            results[key] = {}
        except Exception as e:  # one broken path must not hide the others' answers
            import traceback

            traceback.print_exc()
            rep.check(key, f"{key} ran to the end ({type(e).__name__}: {e})"[:120], math.inf, 0)
            results[key] = {}
        notes += [f"{key}: {n}" for n in part.notes]
        print(f"  ({key}: {time.perf_counter() - now:.0f} s of a {share:.0f} s share)")
    minutes, formula = figures_estimate(results["train"], results["occlusion"], results["mining"])
    print(f"\n== make figures on this device: about {minutes:.1f} min of compute = {formula}")

    passed = sum(c.passed for c in rep.checks)
    print(f"\n{'part':11s} {'check':78s} {'value':>10s} {'tolerance':>10s}")
    for c in rep.checks:
        print(
            f"{c.part:11s} {c.name[:78]:78s} {c.value:10.3g} {c.tolerance:10.3g} "
            f"{'ok' if c.passed else 'FAILED'}"
        )
    for n in notes:
        print(f"note: {n}")
    wall = time.perf_counter() - t_start
    tr, oc, mi, pr = (
        results["train"],
        results["occlusion"],
        results["mining"],
        results["projection"],
    )
    alex = oc.get("alexnet", {})
    zf = next((v for k, v in oc.items() if k.startswith("zf-")), {})
    util = tr.get("utilisation")

    def f(v, fmt=".2f"):
        return (
            "nan"
            if v is None or (isinstance(v, float) and not math.isfinite(v))
            else format(v, fmt)
        )

    print(f"{passed}/{len(rep.checks)} agreement checks passed; {wall:.0f} s in all")
    train_ratio = tr.get("images_per_s", math.nan) / tr.get("bare_images_per_s", math.nan)
    line = (
        f"device={device.type} checks_passed={passed}/{len(rep.checks)} "
        f"all_agree={'yes' if passed == len(rep.checks) else 'no'} "
        f"train_precision={tr.get('precision', 'none')} train_steps={tr.get('steps', 0)} "
        f"train_images_per_s={f(tr.get('images_per_s'), '.0f')} "
        f"train_vs_bare_loop={f(train_ratio)} "
        f"data_wait_share={f(tr.get('wait_share'), '.3f')} "
        f"gpu_utilisation={f(util, '.0f') if util is not None else 'unmeasured'} "
        f"loss_curve_rel_diff={f(tr.get('curve'), '.2e')} "
        f"ddp_max_weight_diff={f(tr.get('ddp'), '.1e')} "
        f"deconvnet_per_s={f(pr.get('deconvnet', {}).get('per_s'), '.0f')} "
        f"deconvnet_vs_captum={f(pr.get('deconvnet', {}).get('speedup'))} "
        f"guided_vs_captum={f(pr.get('guided', {}).get('speedup'))} "
        f"gradient_vs_captum={f(pr.get('gradient', {}).get('speedup'))} "
        f"occlusion_exact_vs_captum_zf={f(zf.get('speedup_exact'))} "
        f"occlusion_exact_vs_captum_alexnet={f(alex.get('speedup_exact'))} "
        f"occlusion_fast_vs_captum_alexnet={f(alex.get('speedup_fast'))} "
        f"occlusion_fast_max_dp_alexnet={f(alex.get('fast_max_dp'), '.1e')} "
        f"ten_x_target={oc.get('ten_x', 'undecided')} "
        f"mining_images_per_s={f(mi.get('mining_per_s'), '.0f')} "
        f"features_images_per_s={f(mi.get('features_per_s'), '.0f')} "
        f"figures_estimate_min={f(minutes, '.1f')} stopped_early={len(notes)} "
        f"init_s={init_s:.1f} wall_s={wall:.0f}"
    )
    record.finish(
        dict(kv.split("=", 1) for kv in line.split()),
        summary=f"{device.type} ({name}), {threads} CPU threads: {passed}/{len(rep.checks)} "
        f"agreement checks passed; training {f(tr.get('images_per_s'), '.0f')} images/s "
        f"({f(train_ratio)}x the speed of a bare loop); deconvnet "
        f"{f(pr.get('deconvnet', {}).get('speedup'))}x Captum; exact occlusion "
        f"{f(zf.get('speedup_exact'))}x Captum on ZF-mini, {f(alex.get('speedup_exact'))}x on "
        f"AlexNet; `make figures` on this device about {f(minutes, '.0f')} min of compute"
        + (f"; {len(notes)} part(s) stopped early at the budget" if notes else ""),
        target="every check agrees with the CPU",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
