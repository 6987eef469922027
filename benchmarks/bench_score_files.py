"""``faceval scores`` on a large bob 4-column score file, against the numpy/scikit-learn way of reading one.

Writes a synthetic bob 4-column file (``claimed_id real_id test_label score``, 10 % genuine, scores rounded to
6 decimals as score files usually are), then, each in a fresh process so that its peak memory is its own:

1. the whole command as a user runs it, with defaults: ``faceval scores FILE --out DIR`` (every figure, plots,
   report), streamed in blocks;
2. the peer baseline: ``numpy.loadtxt`` of the whole file into memory, then ``sklearn.metrics.roc_auc_score``
   (AUC only);

checks that both give the same AUC and prints time and peak memory of each, and their ratios.

    .venv/bin/python benchmarks/bench_score_files.py               # 5,000,000 lines
    .venv/bin/python benchmarks/bench_score_files.py --lines 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_BASELINE = """
import resource, sys, time
import numpy as np
from sklearn.metrics import roc_auc_score
start = time.perf_counter()
claimed, real = np.loadtxt(sys.argv[1], dtype=str, usecols=(0, 1), unpack=True)
scores = np.loadtxt(sys.argv[1], usecols=3)
auc = roc_auc_score(claimed == real, scores)
print(auc, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

_FACEVAL = """
import json, resource, sys, time
from faceval.cli import main
start = time.perf_counter()
try:
    main(["scores", sys.argv[1], "--out", sys.argv[2]], standalone_mode=False)
finally:
    elapsed = time.perf_counter() - start
auc = json.load(open(sys.argv[2] + "/metrics.json"))["models"]["scores"]["auc"]
print(auc, elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_bob4(path: Path, lines: int, seed: int = 0) -> None:
    """A synthetic bob 4-column file, written in blocks."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as handle:
        for start in range(0, lines, 500_000):
            n = min(500_000, lines - start)
            claimed = rng.integers(0, 2000, n)
            genuine = rng.random(n) < 0.1
            real = np.where(genuine, claimed, (claimed + rng.integers(1, 2000, n)) % 2000)
            scores = np.round(np.where(genuine, 0.6, 0.2) + rng.normal(scale=0.15, size=n), 6)
            probes = np.arange(start, start + n)
            handle.write(
                "".join(
                    f"id{c} id{r} probe{p} {s:.6f}\n"
                    for c, r, p, s in zip(
                        claimed.tolist(), real.tolist(), probes.tolist(), scores.tolist(), strict=True
                    )
                )
            )


def run(code: str, *args: str) -> tuple[float, float, float]:
    output = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True).stdout
    auc, seconds, peak_kb = output.split()[-3:]
    return float(auc), float(seconds), float(peak_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=5_000_000)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scores.txt"
        started = time.perf_counter()
        write_bob4(path, arguments.lines)
        size = path.stat().st_size / 2**20
        print(f"{arguments.lines:,} lines, {size:.0f} MiB, written in {time.perf_counter() - started:.1f} s")
        ours = run(_FACEVAL, str(path), str(Path(folder) / "out"))
        peer = run(_BASELINE, str(path))
    print(json.dumps({"faceval": ours, "numpy+sklearn": peer}))
    print(f"{'':<34}{'AUC':>20}{'seconds':>10}{'peak MiB':>10}")
    print(f"{'faceval scores FILE --out DIR':<34}{ours[0]:>20.15f}{ours[1]:>10.1f}{ours[2]:>10.0f}")
    print(f"{'np.loadtxt + roc_auc_score':<34}{peer[0]:>20.15f}{peer[1]:>10.1f}{peer[2]:>10.0f}")
    print(f"ratio faceval / baseline: time {ours[1] / peer[1]:.2f}, peak memory {ours[2] / peer[2]:.2f}")
    if abs(ours[0] - peer[0]) > 1e-12:
        raise SystemExit(f"AUC differs: {ours[0]} against {peer[0]}")


if __name__ == "__main__":
    main()
