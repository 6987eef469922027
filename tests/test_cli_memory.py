"""The command line lets glibc reuse freed blocks of tens of MB instead of mapping them afresh each time."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Where a fresh process's 16 MB block lies: on the heap (reusable when freed) or in a mapping of its own.
WHERE_16_MB_GOES = """
import sys
import numpy as np
from faceval import cli
if sys.argv[1] == "command":  # what the faceval command runs first, whichever subcommand it is
    cli.main(["models"], standalone_mode=False)
block = np.empty(2_000_000)
heap = next(line.split()[0] for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]"))
low, high = (int(bound, 16) for bound in heap.split("-"))
print("heap" if low <= block.ctypes.data < high else "own mapping")
"""


def where_16_mb_goes(mode: str) -> str:
    run = subprocess.run([sys.executable, "-c", WHERE_16_MB_GOES, mode], capture_output=True, text=True, check=True)
    return run.stdout.strip().splitlines()[-1]


def test_blocks_of_tens_of_mb_come_from_the_heap_in_the_command():
    assert where_16_mb_goes("default") == "own mapping"  # glibc's default: each block above 128 kB mapped alone
    assert where_16_mb_goes("command") == "heap"
