"""1:N search at scale: ``faceval identify --embeddings`` on a synthetic 10^6-image gallery and 10^4 probes, next to a
plain numpy baseline (one matrix product per probe block, then ``argsort`` of every probe's scores), in one run.

    python benchmarks/bench_identify.py                    # 10^6 x 10^4, 128-d cosine; baseline on 500 probes
    python benchmarks/bench_identify.py --gallery 100000 --probes 2000 --baseline-probes 500    # a quick look

1. faceval's search (`faceval.stats.search.search`) and the numpy ``argsort`` baseline on the same
   ``--baseline-probes`` probes (a full sort of a million scores per probe makes the baseline too slow for all
   10^4 on two shared cores): time, scores per second, peak traced memory, and the mates' ranks compared one by one.
2. The whole command as a user runs it, with its defaults (exact search, CMC to rank 50, 10 candidates per
   probe, FNIR at FPIR, 1,000 bootstrap resamples, every output file), in a child process: wall time and peak
   resident memory (``ru_maxrss`` of the child); its progress bar shows on stderr.

The gallery is one image per identity (MegaFace-style distractors); half the probes are mated (their identity's
gallery vector plus noise), half non-mated (fresh random vectors).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from faceval.models.scoring import Similarity
from faceval.stats.search import build_gallery, search

DIM = 128


def synthetic(n_gallery: int, n_probes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gallery vectors and names, probe vectors and names (the first half mated)."""
    rng = np.random.default_rng(seed)
    gallery = rng.standard_normal((n_gallery, DIM))
    names = np.char.add("id", np.arange(n_gallery).astype(str))
    mated = n_probes // 2
    chosen = rng.choice(n_gallery, mated, replace=False)
    probes = np.concatenate(
        (gallery[chosen] + 1.6 * rng.standard_normal((mated, DIM)), rng.standard_normal((n_probes - mated, DIM)))
    )
    probe_names = np.concatenate((names[chosen], np.char.add("stranger", np.arange(n_probes - mated).astype(str))))
    return gallery, names, probes, probe_names


def measured(function, *args):
    """Result, seconds and peak traced memory (bytes) of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    result = function(*args)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def faceval_ranks(gallery, names, probes, probe_names):
    built = build_gallery(gallery, names, Similarity.COSINE)
    position = built.index()
    mates = np.array([position.get(name, -1) for name in probe_names])
    return search(probes, mates, built, Similarity.COSINE).mate_rank


def numpy_argsort_ranks(gallery, names, probes, probe_names, block=16):
    """The plain way: normalise, one matrix product per probe block, argsort each row, find the mate."""
    unit_gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    unit_probes = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    row_of = {name: row for row, name in enumerate(names)}
    ranks = np.zeros(len(probes), dtype=np.int64)
    for start in range(0, len(probes), block):
        scores = unit_probes[start : start + block] @ unit_gallery.T
        order = np.argsort(-scores, axis=1)
        for offset, row in enumerate(order):
            mate = row_of.get(probe_names[start + offset])
            if mate is not None:
                ranks[start + offset] = int(np.flatnonzero(row == mate)[0]) + 1
    return ranks


def whole_command(gallery, names, probes, probe_names, folder: Path) -> tuple[float, int, str]:
    """``faceval identify --embeddings`` on an .npz of gallery and probes: seconds, child peak RSS, its summary."""
    roles = np.concatenate((np.full(len(gallery), "gallery"), np.full(len(probes), "probe")))
    path = folder / "synthetic.npz"
    np.savez(path, labels=np.concatenate((names, probe_names)), vectors=np.concatenate((gallery, probes)),
             roles=roles, similarity=np.array("cosine"))  # fmt: skip
    command = [sys.executable, "-m", "faceval", "identify", "--embeddings", str(path), "--out", str(folder / "out")]
    start = time.perf_counter()
    # Its progress bar goes to this process's stderr: a long run shows how far it is.
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, peak_kib * 1024, completed.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=10_000)
    parser.add_argument("--baseline-probes", type=int, default=500)
    args = parser.parse_args()
    gallery, names, probes, probe_names = synthetic(args.gallery, args.probes)
    print(f"synthetic: {args.gallery:,} gallery images (one per identity) x {args.probes:,} probes, {DIM}-d, cosine; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip

    count = min(args.baseline_probes, args.probes)
    # Mated and non-mated probes alike: take every (probes / count)-th one.
    chosen = np.linspace(0, args.probes - 1, count).round().astype(np.int64)
    subset = (gallery, names, probes[chosen], probe_names[chosen])
    ours, our_seconds, our_peak = measured(faceval_ranks, *subset)
    theirs, their_seconds, their_peak = measured(numpy_argsort_ranks, *subset)
    fraction = f"{count:,} of the {args.probes:,} probes ({count / args.probes:.0%})"
    print(f"\n1. the same {fraction} against all {args.gallery:,} gallery images:")
    for label, taken, peak_bytes in (
        ("faceval search (chunked, exact top-k)", our_seconds, our_peak),
        ("numpy matmul + argsort per probe", their_seconds, their_peak),
    ):
        print(f"   {label:<40}{taken:8.1f} s  {count * args.gallery / taken:>16,.0f} scores/s  "
              f"peak traced {peak_bytes / 2**20:8.0f} MiB")  # fmt: skip
    print(f"   faceval is {their_seconds / our_seconds:.1f}x faster; the numpy baseline on all {args.probes:,} probes "
          f"would take about {their_seconds * args.probes / count / 60:.0f} min")  # fmt: skip
    beyond = ours > 50
    agree = np.array_equal(np.where(beyond, 0, ours), np.where(theirs > 50, 0, theirs))
    print(f"   mates' ranks (within 50) equal one by one: {agree} ({int((theirs > 0).sum())} mated probes)")

    with tempfile.TemporaryDirectory() as folder:
        seconds, peak, summary = whole_command(gallery, names, probes, probe_names, Path(folder))
    scores = args.gallery * args.probes
    print(f"\n2. faceval identify --embeddings (whole command, defaults): {seconds:.1f} s, "
          f"{scores / seconds:,.0f} scores/s, peak RSS {peak / 2**30:.2f} GiB (vectors alone: "
          f"{(gallery.nbytes + probes.nbytes) / 2**30:.2f} GiB)")  # fmt: skip
    print("\n".join("   " + line for line in summary.strip().splitlines()[:4]))


if __name__ == "__main__":
    main()
