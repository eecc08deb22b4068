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

import torch  # noqa: E402

torch.set_num_threads(1)
