"""serve's collector settings (core.gc_tuning), checked in a process of their own: they are global."""

from __future__ import annotations

import subprocess
import sys

from quantum_exec.core.gc_tuning import YOUNG

PROBE = """
import gc
from quantum_exec.core import gc_tuning
before = gc.get_threshold()
gc_tuning.tune()
after = gc.get_threshold()
print(gc.get_freeze_count() > 0, after[0], after[1:] == before[1:])
"""


def test_tune_freezes_start_up_and_enlarges_the_young_generation() -> None:
    run = [sys.executable, "-c", PROBE]
    out = subprocess.run(run, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["True", str(YOUNG), "True"]
