"""Dask engine: `faceval metrics` on one process vs a LocalCluster of 2 workers; embedding, 1 vs 2 Dask workers.

    python benchmarks/bench_dask.py                     # defaults below
    python benchmarks/bench_dask.py --pairs 1e9         # the issue's size (minutes per run on 2 cores)

1. Pair scoring + counting (`faceval.stats.lattice.LatticeCounts`, cosine cells of 2^-21; the fixed-memory state that
   makes 10^9 pairs possible): one process (numpy, BLAS on every core) vs `--scheduler local:2` (`DaskPairs`, one
   thread each).
2. The whole `faceval metrics EMB.npz --resamples 0` command (exact `ScoreCounts`) with and without
   `--scheduler local:2`, at a size whose exact table fits in memory.
3. SFace embedding of ../shared/faces/glint360k_celeb24_sample on a LocalCluster of 1 vs 2 workers (no store).

Peak memory is the resident peak of this process (ru_maxrss; the cluster's workers are other processes).

Printed on the 2-core development machine, 2026-11-28, shared with seven other engineers' tests (load average
about 9), ``python benchmarks/bench_dask.py``:

    scoring 2e+08 pairs (20001 x 128, lattice 1e-6): one process 19.9 s wall, 12.8 CPU s; LocalCluster(2) 20.8 s
      wall (cluster start not counted), x0.96, 14.0 CPU s in the workers + 1.1 in the client; counts identical: True;
      peak RSS here 364 MiB
    faceval metrics, 5e+06 pairs, one process: 56.1 s (whole command, cluster start included)
    faceval metrics, 5e+06 pairs, --scheduler local:2: 74.4 s (whole command, cluster start included)
    SFace embedding, 941 images of glint360k_celeb24_sample, 1 Dask worker(s): 43.7 s, 21.5 images/s (85 without a face)
    SFace embedding, 941 images of glint360k_celeb24_sample, 2 Dask worker(s): 46.5 s, 20.2 images/s (85 without a face)

With two cores and a load of 9, neither run gets more than its share of a core: the wall times say nothing about
the speed-up on an idle machine or a real cluster; the CPU seconds say the cluster costs ~10 % more work.
The scoring line was printed when the counts went into a dense lattice since removed. Printed again with the
scale engine's `LatticeCounts` on a lent machine with 16 CPU cores (load average 1.2), ``python3
benchmarks/bench_dask.py --parts scoring --pairs 1e9``:

    scoring 1e+09 pairs (44722 x 128, lattice 2^-21): one process 52.2 s wall, 832.7 CPU s; LocalCluster(2) 46.3 s
      wall (cluster start not counted), x1.13, 93.5 CPU s in the workers + 1.7 in the client; counts identical: True;
      peak RSS here 425 MiB

The one-process run keeps 16 cores busy (BLAS threads) for a job whose counting is single-threaded; the two
workers do the same work in a ninth of the CPU time, but the wall-time gain is 1.13x, short of the 1.7x goal.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from faceval.compute.distributed import DaskPairs, DaskWorkers, connect
from faceval.models.embedders import ModelSpec
from faceval.models.extraction import extract_embeddings
from faceval.models.scoring import Similarity, iter_pair_chunks
from faceval.sources.datasets import load_dataset
from faceval.stats.accumulators import ChunkFeed, ModelFeed, update_counts
from faceval.stats.lattice import Lattice, LatticeCounts

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "faces" / "glint360k_celeb24_sample"


def synthetic(pairs: float, dim: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    n = math.ceil((1 + math.sqrt(1 + 8 * pairs)) / 2)
    rng = np.random.default_rng(seed)
    identities = np.arange(n) // 10
    return rng.normal(size=(identities[-1] + 1, dim))[identities] + rng.normal(scale=0.8, size=(n, dim)), identities


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def scoring(pairs: float) -> None:
    vectors, identities = synthetic(pairs)
    n = len(vectors)
    lattice = functools.partial(LatticeCounts, Lattice.for_similarity(Similarity.COSINE))
    start, cpu = time.perf_counter(), cpu_seconds()
    local = ChunkFeed(iter_pair_chunks(vectors, identities, Similarity.COSINE)).accumulate(
        lattice, ModelFeed(update_counts)
    )
    one, one_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    with connect("local:2") as client:
        before = client.run(cpu_seconds)
        start, cpu = time.perf_counter(), cpu_seconds()
        remote = DaskPairs(client, [(vectors, Similarity.COSINE)], identities).accumulate(
            lattice, ModelFeed(update_counts)
        )
        two, client_cpu = time.perf_counter() - start, cpu_seconds() - cpu
        workers_cpu = sum(client.run(cpu_seconds)[worker] - used for worker, used in before.items())
    same = all(map(np.array_equal, local.cell_counts(), remote.cell_counts()))
    print(
        f"scoring {n * (n - 1) // 2:.3g} pairs ({n} x 128, lattice 2^-21): one process {one:.1f} s wall, "
        f"{one_cpu:.1f} CPU s; LocalCluster(2) {two:.1f} s wall (cluster start not counted), x{one / two:.2f}, "
        f"{workers_cpu:.1f} CPU s in the workers + {client_cpu:.1f} in the client; counts identical: {same}; "
        f"peak RSS here {peak_mib():.0f} MiB"
    )


def metrics_command(pairs: float) -> None:
    vectors, identities = synthetic(pairs)
    with tempfile.TemporaryDirectory() as folder:
        embeddings = Path(folder) / "emb.npz"
        np.savez(embeddings, labels=identities.astype(str), vectors=vectors, similarity=np.array("cosine"))
        for label, extra in (("one process", []), ("--scheduler local:2", ["--scheduler", "local:2"])):
            command = [sys.executable, "-m", "faceval", "metrics", str(embeddings), "--resamples", "0"]
            command += ["--out", str(Path(folder) / "out"), *extra]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            print(f"faceval metrics, {len(vectors) * (len(vectors) - 1) // 2:.3g} pairs, {label}: "
                  f"{time.perf_counter() - start:.1f} s (whole command, cluster start included)")  # fmt: skip


def embedding(sample: Path, images: int | None) -> None:
    dataset = load_dataset(sample)
    if images:
        dataset = type(dataset)(dataset.root, dataset.layout, dataset.records[:images])
    models = sample.parents[1] / "models"
    for workers in (1, 2):
        # The shared SFace and YuNet files; one ONNX Runtime thread per worker (one worker per core).
        spec = ModelSpec(
            "onnx",
            "sface",
            path=str(models / "sface_2021dec_fp32" / "face_recognition_sface_2021dec.onnx"),
            options=(("detector_path", str(models / "yunet_2023mar" / "face_detection_yunet_2023mar.onnx")),
                     ("threads", 1)),
        )  # fmt: skip
        with connect(f"local:{workers}") as client:
            # The first batch on each worker builds the model: time a warm-up batch apart.
            warm = type(dataset)(dataset.root, dataset.layout, dataset.records[: 2 * workers])
            extract_embeddings(warm, spec, progress=False, workers=DaskWorkers(client), batch_size=1)
            start = time.perf_counter()
            result = extract_embeddings(dataset, spec, progress=False, workers=DaskWorkers(client), batch_size=8)
            elapsed = time.perf_counter() - start
        print(
            f"SFace embedding, {dataset.n_images} images of glint360k_celeb24_sample, {workers} Dask worker(s): "
            f"{elapsed:.1f} s, {dataset.n_images / elapsed:.1f} images/s ({result.n_failed} without a face)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=float, default=2e8, help="pairs for the scoring comparison")
    parser.add_argument("--metrics-pairs", type=float, default=5e6, help="pairs for the whole metrics command")
    parser.add_argument("--images", type=int, help="embed only the first N images of the sample")
    parser.add_argument("--sample", type=Path, default=SAMPLE, help="the face folder to embed")
    parser.add_argument("--parts", default="scoring,metrics,embedding", help="which measurements, comma-separated")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} CPU cores shared with other users' work (load average "
        f"{os.getloadavg()[0]:.1f} now): wall times depend on their load; CPU seconds show the work each way costs"
    )
    if "scoring" in args.parts:
        scoring(args.pairs)
    if "metrics" in args.parts:
        metrics_command(args.metrics_pairs)
    if "embedding" in args.parts:
        embedding(args.sample, args.images)


if __name__ == "__main__":
    main()
