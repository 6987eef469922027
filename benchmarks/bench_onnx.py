"""Images per second of the ONNX embedder, and the share of wall time spent outside the model's own inference.

Two models: OpenCV Zoo SFace (YuNet detection + ArcFace alignment, batch fixed at 1) and a tiny model with
JAPANESE FACE's interface (whole image, 224x224, dynamic batch) standing in for the proprietary file. Each runs
twice over the same decoded images: `embed_batch` (preprocess, then infer, one chunk after another) and a
pipeline that preprocesses the next chunk in a thread while the model runs on the current one.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_onnx.py --threads 2 --count 300
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from faceval.models.embedders import EmbeddingResult
from faceval.models.onnx_embedder import OnnxEmbedder, load_onnx_embedder
from faceval.sources.images import load_rgb

REPO = Path(__file__).resolve().parents[1]
# The tiny stand-in model is built by the test suite's helper.
sys.path.insert(0, str(REPO / "tests"))

from onnx_fixtures import write_pooled_matmul_model  # noqa: E402

SETS = ("kpop_idols15", "glint360k_celeb24_sample", "nogizaka46_shozend")


def load_faces(shared: Path, count: int) -> list[np.ndarray]:
    """``count`` images spread evenly over three sets of different sizes (160 px, 112 px, ~600 px photos)."""
    per_set = -(-count // len(SETS))
    images = []
    for name in SETS:
        files = sorted(p for p in (shared / "faces" / name).glob("*/*") if p.is_file())
        step = max(1, len(files) // per_set)
        images += [load_rgb(path) for path in files[::step][:per_set]]
    return images[:count]


def sequential(embedder: OnnxEmbedder, images: Sequence[np.ndarray], chunk: int) -> list[EmbeddingResult]:
    results = []
    for start in range(0, len(images), chunk):
        results += embedder.embed_batch(images[start : start + chunk])
    return results


def pipelined(embedder: OnnxEmbedder, images: Sequence[np.ndarray], chunk: int) -> list[EmbeddingResult]:
    chunks = [images[start : start + chunk] for start in range(0, len(images), chunk)]
    results = []
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = worker.submit(embedder.preprocess_batch, chunks[0])
        for following in [*chunks[1:], None]:
            prepared, seconds = pending.result()
            if following is not None:
                pending = worker.submit(embedder.preprocess_batch, following)
            results += embedder.embed_preprocessed(prepared, seconds)
    return results


def measure(
    label: str,
    embedder: OnnxEmbedder,
    images: Sequence[np.ndarray],
    run: Callable[[OnnxEmbedder, Sequence[np.ndarray], int], list[EmbeddingResult]],
    chunk: int,
) -> None:
    run(embedder, images[:8], chunk)  # warm up: first inferences allocate
    began = time.perf_counter()
    results = run(embedder, images, chunk)
    wall = time.perf_counter() - began
    inference = sum(r.timings.get("inference", 0.0) for r in results)
    preprocess = sum(r.timings.get("preprocess", 0.0) for r in results)
    embedded = sum(r.ok for r in results)
    outside = 100 * (1 - inference / wall)
    print(
        f"{label:<42} {len(images) / wall:7.1f} img/s  wall {wall:6.2f} s  inference {inference:6.2f} s  "
        f"preprocess {1000 * preprocess / len(images):5.2f} ms/img  outside inference {outside:5.1f} %  "
        f"({embedded}/{len(images)} embedded)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the shared data folder")
    parser.add_argument("--count", type=int, default=300, help="images, spread over three face sets")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--chunk", type=int, default=32, help="images per embed_batch call")
    args = parser.parse_args()

    images = load_faces(args.shared, args.count)
    print(f"{len(images)} images from {', '.join(SETS)}; ONNX Runtime threads {args.threads}")
    models = args.shared / "models"
    sface = load_onnx_embedder(
        models / "sface_2021dec_fp32" / "face_recognition_sface_2021dec.onnx",
        "sface",
        threads=args.threads,
        detector_path=models / "yunet_2023mar" / "face_detection_yunet_2023mar.onnx",
    )
    with tempfile.TemporaryDirectory() as folder:
        tiny_path = Path(folder) / "tiny_japanese_face.onnx"
        write_pooled_matmul_model(tiny_path)
        tiny = load_onnx_embedder(tiny_path, "japanese-face", threads=args.threads)
        for label, embedder in (("sface (YuNet + align, batch 1)", sface), ("tiny japanese-face (batch 16)", tiny)):
            measure(label, embedder, images, sequential, args.chunk)
            measure(f"{label} pipelined", embedder, images, pipelined, args.chunk)


if __name__ == "__main__":
    main()
