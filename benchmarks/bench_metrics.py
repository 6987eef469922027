"""The seed's pair loop and per-threshold scikit-learn calls against faceval's chunked, exact pipeline.

On synthetic dlib-like embeddings (128-d, Euclidean distance, a few per cent genuine pairs):

1. the seed's method as written in the blog post: ``itertools.combinations`` over ``{name: vector}`` dicts, one
   ``np.linalg.norm`` per pair, ``roc_curve`` + ``auc`` on negated distances, then a loop over
   ``np.arange(0.1, 1.1, 0.01)`` calling ``accuracy_score``, ``precision_score``, ``recall_score`` and
   ``f1_score`` once per threshold (the seed's ROC and F1 scripts, with the pairs built once, not twice);
2. faceval on the same vectors: ``iter_pair_chunks`` -> ``ScoreCounts`` -> ``verification_summary`` +
   ``threshold_sweep`` (every rate at every distinct score) + ``sweep_at`` on the seed's grid + ``roc_curve``;

checks that both give the same AUC and the same grid figures, and prints the speed ratio. Then ~10^7 pairs
go through faceval alone, in a fresh process so that its peak memory is its own.

    .venv/bin/python benchmarks/bench_metrics.py            # 874 images (381,501 pairs), then 10^7 pairs
    .venv/bin/python benchmarks/bench_metrics.py --quick    # 300 images (44,850 pairs), then 10^6 pairs
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, auc, f1_score, precision_score, recall_score, roc_curve

from faceval.models.scoring import Similarity, identity_codes, iter_pair_chunks
from faceval.stats import metrics
from faceval.stats.metrics import ScoreCounts, seed_grid, sweep_at, threshold_sweep, verification_summary

IMAGES_PER_IDENTITY = 874 / 60


def synthetic_embeddings(n_images: int, n_identities: int, dim: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Identity centres plus per-identity noise, scaled so that distances look like dlib's (AUC near 0.95)."""
    rng = np.random.default_rng(seed)
    identities = rng.integers(0, n_identities, size=n_images)
    centres = rng.normal(size=(n_identities, dim)) * 0.04
    spread = rng.uniform(0.02, 0.045, size=n_identities)
    vectors = centres[identities] + rng.normal(size=(n_images, dim)) * spread[identities, None]
    return [f"person{k:04d}" for k in identities], vectors


def seed_method(names: list[str], vectors: np.ndarray) -> dict[str, Any]:
    """The seed's code, kept as written (its variable names and list comprehensions included)."""

    def is_same_person(embedding1, embedding2):
        euclidean_distance = np.linalg.norm(np.array(embedding1) - np.array(embedding2))
        return euclidean_distance

    embeddings_dict = [{name: vector} for name, vector in zip(names, vectors, strict=True)]
    pair = list(itertools.combinations(embeddings_dict, 2))
    # The seed's own idioms (list(d.keys())[0]) are part of what is timed.
    labels = [1 if list(pair[i][0].keys())[0] == list(pair[i][1].keys())[0] else 0 for i in range(len(pair))]  # noqa: RUF015
    scores = [
        is_same_person(pair[i][0][list(pair[i][0].keys())[0]], pair[i][1][list(pair[i][1].keys())[0]])  # noqa: RUF015
        for i in range(len(pair))
    ]
    fpr, tpr, _ = roc_curve(labels, [-x for x in scores])
    roc_auc = auc(fpr, tpr)

    labels_scores = list(zip(labels, scores, strict=True))
    accuracies, precisions, recalls, f1_scores = [], [], [], []
    thresholds = np.arange(0.1, 1.1, 0.01)
    true_labels = [label for label, _ in labels_scores]
    with warnings.catch_warnings():
        # precision_score warns (and returns 0) at thresholds that accept no pair, as in the seed.
        warnings.simplefilter("ignore")
        for threshold in thresholds:
            predicted_labels = [1 if score <= threshold else 0 for _, score in labels_scores]
            accuracies.append(accuracy_score(true_labels, predicted_labels))
            precisions.append(precision_score(true_labels, predicted_labels))
            recalls.append(recall_score(true_labels, predicted_labels))
            f1_scores.append(f1_score(true_labels, predicted_labels))
    return {
        "auc": roc_auc,
        "n_pairs": len(pair),
        "grid": {"accuracy": accuracies, "precision": precisions, "recall": recalls, "f1": f1_scores},
    }


def faceval_method(names: list[str], vectors: np.ndarray, chunk: int) -> dict[str, Any]:
    """Every figure faceval reports for one model, from the same vectors."""
    similarity = Similarity.EUCLIDEAN
    counts = ScoreCounts()
    for pairs in iter_pair_chunks(vectors, identity_codes(names), similarity, max_pairs_per_chunk=chunk):
        counts.update(pairs.scores, pairs.genuine)
    table = counts.compute()
    summary = verification_summary(table)
    every_threshold = threshold_sweep(table).columns()
    grid = sweep_at(table, similarity.from_model_units(seed_grid())).columns()
    curve = metrics.roc_curve(table)
    return {
        "summary": summary,
        "n_distinct": len(table),
        "n_sweep_rows": every_threshold["threshold"].size,
        "n_roc_points": curve.fmr.size,
        "grid": {name: grid[name] for name in ("accuracy", "precision", "recall", "f1")},
    }


def compare(args: argparse.Namespace) -> None:
    n_identities = max(2, round(args.images / IMAGES_PER_IDENTITY))
    names, vectors = synthetic_embeddings(args.images, n_identities, args.dim, args.seed)
    print(f"{args.images} images of {n_identities} identities, {args.dim}-d; cpus: {os.cpu_count()}")

    start = time.perf_counter()
    seed = seed_method(names, vectors)
    seed_seconds = time.perf_counter() - start

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = faceval_method(names, vectors, args.chunk)
        times.append(time.perf_counter() - start)
    ours_seconds = statistics.median(times)

    summary = ours["summary"]
    auc_difference = abs(summary["auc"] - seed["auc"])
    grid_difference = max(
        float(np.max(np.abs(np.asarray(seed["grid"][name]) - ours["grid"][name]))) for name in seed["grid"]
    )
    print(f"pairs: {seed['n_pairs']:,} ({summary['n_genuine']:,} genuine, {summary['n_impostor']:,} impostor)")
    print(f"seed method:    {seed_seconds:9.3f} s   AUC {seed['auc']:.15f} (trapezoid over sklearn roc_curve)")
    print(
        f"faceval:        {ours_seconds:9.3f} s   AUC {summary['auc']:.15f} (exact Mann-Whitney)"
        f"   median of {args.repeats}, min {min(times):.3f} s"
    )
    print(
        f"agreement: |AUC difference| = {auc_difference:.1e}; seed-grid accuracy/precision/recall/F1 max "
        f"|difference| = {grid_difference:.1e}"
    )
    print(f"speed ratio: {seed_seconds / ours_seconds:,.0f}x")
    best, eer = summary["best_f1"], summary["eer"]
    print(
        f"faceval extras: EER {eer['value']:.4f} at distance {-eer['threshold']:.4f}; best F1 {best['f1']:.4f} "
        f"at distance {-best['threshold']:.4f} (exact, {ours['n_sweep_rows']:,} distinct thresholds); "
        f"TAR@FAR=1e-3 {summary['tar_at_far']['1e-3']['tar']:.4f}"
    )
    if auc_difference > 1e-12 or grid_difference > 1e-12:
        sys.exit("the seed method and faceval disagree")


def large_only(args: argparse.Namespace) -> None:
    """One run of faceval on ~``args.large_pairs`` pairs; prints one JSON line (run in a fresh process)."""
    n_images = math.ceil((1 + math.sqrt(1 + 8 * args.large_pairs)) / 2)
    n_identities = max(2, round(n_images / IMAGES_PER_IDENTITY))
    names, vectors = synthetic_embeddings(n_images, n_identities, args.dim, args.seed)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    ours = faceval_method(names, vectors, args.chunk)
    seconds = time.perf_counter() - start
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    summary = ours["summary"]
    result = {
        "images": n_images,
        "identities": n_identities,
        "pairs": summary["n_genuine"] + summary["n_impostor"],
        "distinct": ours["n_distinct"],
        "seconds": seconds,
        "peak_rss_mib": rss_peak / 1024,
        "rss_before_mib": rss_before / 1024,
        "auc": summary["auc"],
    }
    print(json.dumps(result))


def large(args: argparse.Namespace) -> None:
    command = [sys.executable, os.path.abspath(__file__), "--large-only"]
    command += ["--large-pairs", str(args.large_pairs), "--chunk", str(args.chunk), "--dim", str(args.dim)]
    command += ["--seed", str(args.seed)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    print(
        f"\nlarge: {result['pairs']:,} pairs ({result['images']:,} images, {result['identities']} identities, "
        f"{result['distinct']:,} distinct scores), chunks of {args.chunk:,}"
    )
    print(
        f"faceval pairs -> ScoreCounts -> summary + full sweep + seed grid + ROC: {result['seconds']:.2f} s, "
        f"peak RSS {result['peak_rss_mib']:,.0f} MiB (process, {result['rss_before_mib']:,.0f} MiB before "
        f"the run); AUC {result['auc']:.6f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=874, help="images in the seed comparison (default 874)")
    parser.add_argument("--large-pairs", type=int, default=10_000_000, help="pairs in the large run")
    parser.add_argument("--chunk", type=int, default=1_000_000, help="pairs per chunk for faceval")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="faceval timings to take the median of")
    parser.add_argument("--quick", action="store_true", help="300 images, then 10^6 pairs")
    parser.add_argument("--skip-large", action="store_true", help="only the comparison with the seed")
    parser.add_argument("--large-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.images, args.large_pairs = 300, 1_000_000
    if args.large_only:
        large_only(args)
        return
    compare(args)
    if not args.skip_large:
        large(args)


if __name__ == "__main__":
    main()
