"""Every benchmark runs (``--quick``) and ends with its ``RESULT <name> key=value ...`` line, the
contract `make bench` and labs' CI rely on. Speed itself is the benchmarks' business, not the
tests': nothing here asserts a time or a ratio."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# occlusion and gpu have their own smoke tests (test_occlusion.py, test_gpu_benchmark.py)
NAMES = sorted(p.stem for p in (ROOT / "benchmarks").glob("[a-z]*.py")
               if p.stem not in ("occlusion", "gpu"))


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_quick_run_ends_with_result_line(name):
    out = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"benchmarks.{name} failed:\n{out.stderr[-2000:]}"
    last = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"RESULT {name}( [A-Za-z0-9_]+=[^ =]+)+", last), \
        f"benchmarks.{name} must end with 'RESULT {name} key=value ...', got: {last!r}"
