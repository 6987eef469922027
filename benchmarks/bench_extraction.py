"""faceval's extraction (process pool, store) against a plain one-process loop of the same dlib calls.

On a real set from ``../shared/faces`` (JAFFE, 213 images, by default):

1. raw loop: one process, Pillow decode + ``get_frontal_face_detector().run`` (upsample 1) + 5-point
   ``shape_predictor`` + ``compute_face_descriptor``, largest face: the seed's pipeline with nothing around it;
2. cold run: ``extract_embeddings(jobs=2)`` from a `ModelSpec` into an empty store (building the parent's model,
   starting and loading the workers included) against (1), models loaded, goal >= 1.8x;
3. warm re-run on the same store against (2), goal >= 50x faster: with the model already built (as
   ``faceval evaluate`` has it, having checked every model first) and, for the record, from the `ModelSpec`;
4. overhead: ``extract_embeddings(jobs=1)`` into an empty store (hashing, store, result objects) against (1)
   with the models already loaded in both, goal < 5 %.

Every timing is the best of ``--repeats`` runs; the raw loop, (4) and (2) alternate so that a neighbour's load
hits them alike. The vectors of the raw loop and of faceval must be identical.

    .venv/bin/python benchmarks/bench_extraction.py                 # jaffe, 213 images
    .venv/bin/python benchmarks/bench_extraction.py --limit 60 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from faceval.models.embedders import ModelSpec
from faceval.models.extraction import extract_embeddings
from faceval.models.store import EmbeddingStore
from faceval.sources.datasets import Dataset, load_dataset

SHARED = Path(os.environ.get("FACEVAL_SHARED") or Path(__file__).resolve().parents[2] / "shared")
DLIB = ModelSpec("dlib", "dlib")


class RawDlib:
    """The seed's dlib calls and nothing else."""

    def __init__(self) -> None:
        import dlib
        import face_recognition_models as models

        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self.descriptor = dlib.face_recognition_model_v1(models.face_recognition_model_location())

    def embed(self, path: Path) -> np.ndarray | None:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        rectangles, _, _ = self.detector.run(pixels, 1, 0.0)
        if not rectangles:
            return None
        largest = max(rectangles, key=lambda rectangle: rectangle.area())
        shape = self.landmarks(pixels, largest)
        return np.asarray(self.descriptor.compute_face_descriptor(pixels, shape, 0, 0.25))


def best_of(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def fresh_store(folder: Path) -> EmbeddingStore:
    path = Path(tempfile.mkdtemp(dir=folder)) / "embeddings.sqlite"
    return EmbeddingStore(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "faces" / "jaffe")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no face images at {args.data} (../shared/faces beside the repository, or FACEVAL_SHARED)")
    dataset = load_dataset(args.data)
    dataset = Dataset(dataset.root, dataset.layout, dataset.records[: args.limit])
    paths = [record.path for record in dataset.records]
    print(f"{dataset.n_images} images from {args.data}; {os.cpu_count()} CPUs; load average {os.getloadavg()}")

    raw_load, raw = best_of(1, RawDlib)
    embedder = DLIB.build()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        raw_times, faceval_times, cold_times = [], [], []
        for _ in range(args.repeats):  # interleaved, so that a neighbour's load hits all three alike
            started = time.perf_counter()
            raw_vectors = [raw.embed(path) for path in paths]
            raw_times.append(time.perf_counter() - started)
            with fresh_store(work) as store:
                started = time.perf_counter()
                in_process = extract_embeddings(dataset, embedder, jobs=1, store=store, progress=False)
                faceval_times.append(time.perf_counter() - started)
            store = fresh_store(work)
            started = time.perf_counter()
            extract_embeddings(dataset, DLIB, jobs=2, store=store, progress=False)
            cold_times.append(time.perf_counter() - started)
            store.close()
        raw_time, faceval_time, cold_time = min(raw_times), min(faceval_times), min(cold_times)
        for raw_vector, result in zip(raw_vectors, in_process.results, strict=True):
            assert (raw_vector is None) == (result.vector is None) and (
                raw_vector is None or np.array_equal(raw_vector, result.vector)
            ), "faceval and the raw loop disagree"

        with EmbeddingStore(store.path) as store:
            # Every image is a hit, so no worker is started whatever ``jobs`` says; jobs=1 because a built
            # DlibEmbedder cannot be pickled for workers (a ModelSpec can).
            warm_time, warm = best_of(
                args.repeats, lambda: extract_embeddings(dataset, embedder, jobs=1, store=store, progress=False)
            )
            warm_spec_time, _ = best_of(
                args.repeats, lambda: extract_embeddings(dataset, DLIB, store=store, progress=False)
            )
        assert warm.n_cached == dataset.n_images

    def line(label: str, seconds: float, note: str = "") -> None:
        print(f"  {label:<56}{seconds:>8.2f} s  {dataset.n_images / seconds:>9.1f} img/s  {note}")

    print(f"best of {args.repeats}; load average now {os.getloadavg()}")
    line("raw dlib loop, 1 process (+ model load)", raw_time + raw_load, f"(model load {raw_load:.2f} s)")
    line("faceval cold, 2 workers, empty store, from ModelSpec", cold_time)
    print(f"  -> parallel speed-up {(raw_time + raw_load) / cold_time:.2f}x (goal >= 1.8x)")
    line("faceval warm re-run, model built", warm_time)
    line("faceval warm re-run, from ModelSpec (builds the model)", warm_spec_time)
    print(
        f"  -> warm vs cold: {cold_time / warm_time:.0f}x faster (goal >= 50x); "
        f"{cold_time / warm_spec_time:.0f}x including the model build"
    )
    line("raw dlib loop, 1 process, models loaded", raw_time)
    line("faceval jobs=1, empty store, model built", faceval_time)
    print(f"  -> overhead over raw dlib calls {100 * (faceval_time / raw_time - 1):+.1f} % (goal < 5 %)")


if __name__ == "__main__":
    main()
