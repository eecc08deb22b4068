"""Shared test settings: small thread counts, an isolated figures folder, the repo's cache."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Tests never write the committed figures: tiny-profile outputs go to the build folder.
os.environ.setdefault("ZFCORE_FIGURES", str(ROOT / "build" / "test-figures"))
os.environ.setdefault("ZFCORE_BUILD", str(ROOT / "build"))
# Never reach the network for weights or data during tests.
os.environ["ZFCORE_DOWNLOAD"] = "0"
os.environ.setdefault("MPLBACKEND", "Agg")
# pytest-xdist runs two workers on this 2-core machine and each notebook kernel inherits this
# environment: one thread per process avoids oversubscription (which costs 10x and more here).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(1)

# Property-based tests: the same examples on every run (CI must not be flaky) and no per-example
# deadline (this machine is shared; timing is the benchmarks' job, not the tests').
try:
    from hypothesis import settings

    settings.register_profile("zfcore", derandomize=True, deadline=None, print_blob=True)
    settings.load_profile("zfcore")
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="session")
def photo(tmp_path_factory):
    """A random 120x90 photo named ``my photo.png`` (a space in the name on purpose)."""
    rng = np.random.default_rng(0)
    p = tmp_path_factory.mktemp("photos") / "my photo.png"
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(p)
    return p
