"""Streaming identity-level intervals beside the exact identity bootstrap, on the real faces, as a user runs them.

Runs ``faceval evaluate`` on ``../shared/faces/manifest.csv`` grouped by dataset twice, once with
``--intervals bootstrap`` and once with ``--intervals streaming`` (same seed, so both draw the very same identity
multiplicities), reads both ``metrics.json`` and prints every interval pair with issue 9's criterion: each endpoint
of the streaming interval within 30 % of the bootstrap interval's width (``|difference| / width <= 0.3``), the
pass count, and the wall time and peak memory (max RSS) of each command. The embeddings come from the user's
embedding store (filled by an earlier ``faceval evaluate`` of the same manifest), so neither run embeds anything.

Intervals that appear twice in ``metrics.json`` (the groups' rates at a threshold are also listed under
``global_threshold`` / ``at_threshold``: same model, same group, same values) are counted once. A bootstrap interval
of zero width (a rate of 0 or 1 in every resample) has no criterion: it is listed apart, with whether the streaming
interval equals it. Groups with fewer identities
than ``faceval.stats.groups.STREAMING_MIN_IDENTITIES`` are marked ``*``: the streaming run flags them in its notes.

    FACEVAL_MODELS_DIR=../shared/models PYTHONPATH=src nice python benchmarks/bench_intervals.py
    python benchmarks/bench_intervals.py --model dlib --model sface     # several models (and their comparison)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from faceval.stats.groups import STREAMING_MIN_IDENTITIES

MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "faces" / "manifest.csv"
CRITERION = 0.3
METHODS = ("bootstrap", "streaming")


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of one command (its own rusage, via wait4)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        sys.exit(f"command failed ({process.returncode}): {' '.join(command)}\n{output}")
    return wall, usage.ru_maxrss / 1024


def intervals(metrics: dict) -> dict[str, tuple[float, float]]:
    """Every ``*_ci`` / ``ci`` interval in ``metrics.json``, by its path."""
    found: dict[str, tuple[float, float]] = {}

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                leaf = isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)
                if leaf and (key == "ci" or key.endswith("_ci")):
                    found[f"{path}/{key}".lstrip("/")] = (float(value[0]), float(value[1]))
                else:
                    walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}/{index}")

    walk(metrics, "")
    return found


def small_groups(metrics: dict) -> set[str]:
    return {
        name
        for model in metrics["models"].values()
        for name, group in (model.get("groups") or {}).items()
        if group.get("n_identities", STREAMING_MIN_IDENTITIES) < STREAMING_MIN_IDENTITIES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--model", action="append", help="model(s) to evaluate [default: dlib]")
    parser.add_argument("--group-by", default="dataset")
    parser.add_argument("--out", type=Path, help="keep both runs' outputs here [default: a temporary folder]")
    args = parser.parse_args()
    if not args.manifest.is_file():
        sys.exit(f"{args.manifest} not found: this benchmark needs the shared real faces (../shared/faces)")
    models = args.model or ["dlib"]
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_intervals_"))
    results = {}
    for method in METHODS:
        command = [sys.executable, "-m", "faceval", "evaluate", "--manifest", str(args.manifest), "--group-by",
                   args.group_by, *(part for model in models for part in ("--model", model)), "--intervals", method,
                   "--out", str(out / method), "--quiet"]  # fmt: skip
        wall, peak = run(command)
        metrics = json.loads((out / method / "metrics.json").read_text())
        results[method] = (wall, peak, metrics)
        print(f"{method:9s}: {wall:6.1f} s wall, {peak:6.0f} MB peak   $ {' '.join(command)}")
        notes = [note for note in metrics.get("notes", []) if "streaming intervals" in note]
        for model in metrics["models"].values():
            notes += [note for note in model.get("group_notes", []) if "streaming intervals" in note]
        for note in notes:
            print(f"           note: {note}")
    pairs = [model["n_pairs"] for model in results["bootstrap"][2]["models"].values()]
    print(f"pairs per model: {', '.join(f'{n:,}' for n in pairs)}; criterion: |endpoint difference| <= "
          f"{CRITERION} x bootstrap width; * = group under {STREAMING_MIN_IDENTITIES} identities")  # fmt: skip

    exact, streaming = (intervals(results[method][2]) for method in METHODS)
    few = small_groups(results["streaming"][2])
    seen: set[tuple] = set()
    passed, judged, degenerate, worst = 0, 0, [], []
    print(f"{'interval':72s} {'bootstrap':>21s} {'streaming':>21s} {'ratio':>6s}")
    for path, (low, high) in exact.items():
        if path not in streaming:
            print(f"{path:72s} missing from the streaming run")
            judged += 1
            continue
        other = streaming[path]
        parts = path.split("/")
        group = parts[parts.index("groups") + 1] if "groups" in parts else None
        key = (parts[1], group, low, high, *other)
        if key in seen:
            continue  # the same interval listed a second time
        seen.add(key)
        mark = "*" if group in few else " "
        width = high - low
        shown = f"{mark}{path:71s} [{low:8.5f}, {high:8.5f}] [{other[0]:8.5f}, {other[1]:8.5f}]"
        if width <= 0:
            degenerate.append((path, other == (low, high)))
            print(f"{shown}   zero-width bootstrap: {'equal' if other == (low, high) else 'DIFFERENT'}")
            continue
        ratio = max(abs(other[0] - low), abs(other[1] - high)) / width
        judged += 1
        passed += ratio <= CRITERION
        worst.append((ratio, path))
        print(f"{shown} {ratio:6.2f}{'' if ratio <= CRITERION else '  MISS'}")
    worst.sort(reverse=True)
    print(f"\npass {passed} of {judged} intervals (endpoint within {CRITERION:.0%} of the bootstrap width); "
          f"{len(degenerate)} more with a zero-width bootstrap interval, "
          f"{sum(equal for _, equal in degenerate)} of them equal in the streaming run")  # fmt: skip
    print("worst ratios: " + ", ".join(f"{path} {ratio:.2f}" for ratio, path in worst[:5]))
    (wall_b, peak_b, _), (wall_s, peak_s, _) = results["bootstrap"], results["streaming"]
    print(f"bootstrap {wall_b:.1f} s / {peak_b:.0f} MB, streaming {wall_s:.1f} s / {peak_s:.0f} MB "
          f"(streaming / bootstrap: time {wall_s / wall_b:.2f}x, memory {peak_s / peak_b:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
