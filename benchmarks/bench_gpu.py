"""GPU engine: 10^10 pairs scored and counted on the card vs the CPU path on the same machine; SFace on CUDA.

Run on a machine with an NVIDIA GPU and CuPy (``pip install 'faceval[gpu]'``):

    python benchmarks/bench_gpu.py                    # 10^10 pairs on the GPU, 5*10^7 on the CPU
    python benchmarks/bench_gpu.py --sface MODEL.onnx # also SFace throughput, CUDA vs CPU provider

Both paths run the same code (`faceval.compute.gpu.DevicePairs`), CuPy or numpy as the array module, into the scale
engine's `faceval.stats.lattice.LatticeCounts` (cosine cells of 2^-21: memory does not grow with the pairs), each
tile's scores placed and counted on the card and only the occupied cells' counts taken to the host. The
CPU path uses every core for the matrix products (BLAS), one for the counting. Synthetic unit-scale
embeddings, 10 images per identity, seed 0.

Printed on a lent NVIDIA H200 (16 CPU cores), 2026-11-28, ``python3 benchmarks/bench_gpu.py`` (the counts go into
`LatticeCounts` on the card, only occupied cells' counts to the host):

    CPU cores: 16; numpy 2.5.2
    GPU: NVIDIA H200, 139.8 GiB (139.3 free); CuPy 14.2.0
    5e+07 pairs (10001 vectors x 128): CPU path 3.08 s (1.62e+07 pairs/s), GPU 0.05 s (1.02e+09 pairs/s), x62.9;
      lattice cell counts differing GPU vs CPU: 0 of 100010000
    1e+10 pairs (141422 vectors x 128) on the GPU: 5.8 s, 1.71e+09 pairs/s (x105.5 the CPU path's rate); tiles of
      8257 rows; peak device memory held 69.3 GiB of 139.8; state 44 MiB; CPU path at this size, at its rate: ~10 min

SFace on CUDA is still to be measured: the lent machine's onnxruntime (1.30.0) has no CUDA execution provider, it
reaches no package index, and onnxruntime-gpu's wheel is larger than what can be carried there (64 MiB). On that
machine's CPU, SFace ran at 112.4 images/s (500 images, an earlier run).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import time

import numpy as np

from faceval.compute.gpu import DevicePairs, cupy_or_none
from faceval.models.onnx_embedder import onnx_providers
from faceval.models.scoring import Similarity
from faceval.stats.accumulators import ModelFeed, update_counts
from faceval.stats.lattice import Lattice, LatticeCounts


def synthetic(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    identities = np.arange(n) // 10
    centres = rng.normal(size=(identities[-1] + 1, dim))
    return centres[identities] + rng.normal(scale=0.8, size=(n, dim)), identities


def images_for(pairs: float) -> int:
    return math.ceil((1 + math.sqrt(1 + 8 * pairs)) / 2)


def run(n: int, dim: int, xp, max_bytes: int | None = None) -> tuple[float, LatticeCounts, int]:
    vectors, identities = synthetic(n, dim)
    lattice = functools.partial(LatticeCounts, Lattice.for_similarity(Similarity.COSINE))
    feed = DevicePairs([(vectors, Similarity.COSINE)], identities, xp, max_bytes=max_bytes)
    start = time.perf_counter()
    state = feed.accumulate(lattice, ModelFeed(update_counts))
    if xp is not np:
        xp.cuda.Device().synchronize()
    elapsed = time.perf_counter() - start
    assert state.n_genuine + state.n_impostor == n * (n - 1) // 2, "every pair counted once"
    genuine_expected = (n // 10) * 45 + (n % 10) * (n % 10 - 1) // 2
    assert state.n_genuine == genuine_expected, "genuine pairs"
    return elapsed, state, feed.rows_per_tile


def differing_counts(a: LatticeCounts, b: LatticeCounts) -> int:
    """Sum over cells of the absolute differences of the genuine and impostor counts."""
    cells = np.union1d(a.cell_counts()[0], b.cell_counts()[0])
    dense = []
    for state in (a, b):
        occupied, genuine, impostor = state.cell_counts()
        counts = np.zeros((cells.size, 2), dtype=np.int64)
        counts[np.searchsorted(cells, occupied)] = np.column_stack((genuine, impostor))
        dense.append(counts)
    return int(np.abs(dense[0] - dense[1]).sum())


def sface_throughput(model: str, images: int) -> None:
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, providers here: {ort.get_available_providers()}")
    try:
        cuda = onnx_providers("cuda")
    except ValueError as error:
        print(f"SFace on CUDA: not measured: {error}")
        cuda = None
    batch = np.random.default_rng(0).uniform(0, 255, size=(1, 3, 112, 112)).astype(np.float32)
    for name, providers in (("CPU", onnx_providers("cpu")), ("CUDA", cuda)):
        if providers is None:
            continue
        session = ort.InferenceSession(model, providers=providers)
        feed = {session.get_inputs()[0].name: batch}
        for _ in range(10):
            session.run(None, feed)
        start = time.perf_counter()
        for _ in range(images):
            session.run(None, feed)
        elapsed = time.perf_counter() - start
        print(f"SFace {name:4} ({session.get_providers()[0]}): {images / elapsed:8.1f} images/s ({images} images)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=float, default=1e10)
    parser.add_argument("--cpu-pairs", type=float, default=5e7)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--sface", help="SFace ONNX file: also measure its throughput, CUDA vs CPU provider")
    parser.add_argument("--sface-images", type=int, default=500)
    args = parser.parse_args()
    cupy = cupy_or_none()
    print(f"CPU cores: {os.cpu_count()}; numpy {np.__version__}")
    if cupy is None:
        raise SystemExit("no CUDA GPU seen by CuPy: this benchmark needs one")
    device = cupy.cuda.Device()
    free, total = cupy.cuda.runtime.memGetInfo()
    name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"].decode()
    print(f"GPU: {name}, {total / 2**30:.1f} GiB ({free / 2**30:.1f} free); CuPy {cupy.__version__}")

    n_cpu = images_for(args.cpu_pairs)
    cpu_pairs = n_cpu * (n_cpu - 1) // 2
    run(2000, args.dim, cupy)  # warm-up: CUDA context, cuBLAS, kernels compiled
    gpu_small, gpu_state, _ = run(n_cpu, args.dim, cupy)
    cpu_small, cpu_state, _ = run(n_cpu, args.dim, np)
    differing = differing_counts(gpu_state, cpu_state)
    print(
        f"{cpu_pairs:.3g} pairs ({n_cpu} vectors x {args.dim}): CPU path {cpu_small:.2f} s "
        f"({cpu_pairs / cpu_small:.3g} pairs/s), GPU {gpu_small:.2f} s ({cpu_pairs / gpu_small:.3g} pairs/s), "
        f"x{cpu_small / gpu_small:.1f}; lattice cell counts differing GPU vs CPU: {differing} of {2 * cpu_pairs}"
    )

    n = images_for(args.pairs)
    pairs = n * (n - 1) // 2
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    elapsed, state, rows = run(n, args.dim, cupy)
    print(
        f"{pairs:.4g} pairs ({n} vectors x {args.dim}) on the GPU: {elapsed:.1f} s, {pairs / elapsed:.3g} pairs/s "
        f"(x{(pairs / elapsed) / (cpu_pairs / cpu_small):.1f} the CPU path's rate); tiles of {rows} rows; "
        f"peak device memory held {pool.total_bytes() / 2**30:.1f} GiB of {total / 2**30:.1f}; "
        f"state {state.nbytes / 2**20:.0f} MiB; CPU path at this size, at its rate: "
        f"~{pairs / (cpu_pairs / cpu_small) / 60:.0f} min"
    )
    if args.sface:
        sface_throughput(args.sface, args.sface_images)


if __name__ == "__main__":
    main()
