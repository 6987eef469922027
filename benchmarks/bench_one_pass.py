"""One pass over the pairs for every model: two models evaluated together, each pair scored once.

    python benchmarks/bench_one_pass.py                      # 2,500 images (3.1 M pairs), bootstrap, 200 resamples
    python benchmarks/bench_one_pass.py --images 4000 --intervals streaming

Runs `faceval.evaluation.evaluate_embeddings` on two models' synthetic embeddings (128-d, 10 images per identity,
two groups, seed 0) with group intervals and the paired model comparison, and counts the scores the run computes
(the elements of the scoring tiles, `faceval.models.scoring.block_scores`, over the number of pairs: a tile scores its
rows against every later row, so one model's pass computes about 2 scores a pair, a second scoring pass would double
it). Beside it, in its own process, the numpy + scikit-learn peer: each model's scores of all pairs from one matrix
product and ``roc_auc_score`` of each (no intervals, no comparison). Peak memory is each process's maximum RSS.

Printed on the 2-core development machine (shared with other work, so times vary by some 20 %), 2026-11-28,
``python benchmarks/bench_one_pass.py``, then the same script on main before the one pass (``PYTHONPATH`` of main):

    2,500 images, 3,123,750 pairs, 2 models (bootstrap, 200 resamples):
      faceval one pass: 13.0 s, peak RSS 1,419 MB, 2.33 scores computed per pair; AUC difference +0.000283
      numpy + scikit-learn peer (AUCs only): 2.9 s, peak RSS 561 MB, ratio 4.6x time
    main (one pass per model, the comparison scoring all pairs again): 15.5 s, peak RSS 1,467 MB, 4.67 scores
      computed per pair; AUC difference +0.000283

The identity bootstrap (all pairs and each group, both models, and the paired comparison) takes most of the time.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def embeddings(n_images: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    identities = np.arange(n_images) // 10
    base = rng.normal(size=(identities.max() + 1, 128))[identities]
    return identities, [base + rng.normal(scale=scale, size=base.shape) for scale in (0.8, 1.2)]


def peer(n_images: int) -> None:
    from sklearn.metrics import roc_auc_score

    identities, models = embeddings(n_images)
    first, second = np.triu_indices(n_images, k=1)
    genuine = identities[first] == identities[second]
    for vectors in models:
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        roc_auc_score(genuine, (unit @ unit.T)[first, second])


def faceval_run(n_images: int, intervals: str, resamples: int) -> str:
    import faceval.models.scoring as scoring
    from faceval.evaluation import evaluate_embeddings
    from faceval.models.embedders import EmbeddingResult
    from faceval.models.extraction import EmbeddingSet
    from faceval.models.scoring import Similarity
    from faceval.sources.datasets import Dataset, ImageRecord
    from faceval.stats.groups import GroupOptions

    identities, models = embeddings(n_images)
    dataset = Dataset(
        Path("."), "folders", tuple(ImageRecord(Path(f"{k}.png"), f"id{i}") for k, i in enumerate(identities))
    )
    sets = [
        EmbeddingSet(name, Similarity.COSINE, {}, tuple(EmbeddingResult(vector) for vector in vectors))
        for name, vectors in zip(("a", "b"), models, strict=True)
    ]
    labels = np.where(identities % 2 == 0, "even", "odd").astype(object)
    options = {embeddings.model: GroupOptions(n_resamples=resamples, intervals=intervals) for embeddings in sets}
    computed = []
    block_scores = scoring.block_scores

    def counted(a, a_sq, b, b_sq, similarity, xp=np):  # type: ignore[no-untyped-def]
        computed.append(a.shape[0] * b.shape[0])
        return block_scores(a, a_sq, b, b_sq, similarity, xp)

    scoring.block_scores = counted
    evaluation = evaluate_embeddings(dataset, sets, groups=labels, group_options=options)
    (comparison,) = evaluation.comparisons
    n_pairs = n_images * (n_images - 1) // 2
    return f"{sum(computed) / n_pairs:.2f} scores computed per pair; AUC difference {comparison.difference:+.6f}"


def timed(argv: list[str]) -> tuple[float, float, str]:
    """Wall time, peak RSS (MB) and output of this script in a child process."""
    start = time.perf_counter()
    output = subprocess.run([sys.executable, __file__, *argv], check=True, capture_output=True, text=True).stdout
    elapsed = time.perf_counter() - start
    peak_mb, _, text = output.strip().partition(" ")
    return elapsed, float(peak_mb), text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2500)
    parser.add_argument("--intervals", choices=("bootstrap", "streaming"), default="bootstrap")
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--child", choices=("faceval", "peer"))
    args = parser.parse_args()
    if args.child:
        text = faceval_run(args.images, args.intervals, args.resamples) if args.child == "faceval" else ""
        if args.child == "peer":
            peer(args.images)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, text)
        return
    common = ["--images", str(args.images), "--intervals", args.intervals, "--resamples", str(args.resamples)]
    n_pairs = args.images * (args.images - 1) // 2
    print(f"{args.images:,} images, {n_pairs:,} pairs, 2 models ({args.intervals}, {args.resamples} resamples):")
    ours, ours_mb, text = timed([*common, "--child", "faceval"])
    print(f"  faceval one pass: {ours:.1f} s, peak RSS {ours_mb:,.0f} MB, {text}")
    theirs, theirs_mb, _ = timed([*common, "--child", "peer"])
    print(
        f"  numpy + scikit-learn peer (AUCs only): {theirs:.1f} s, peak RSS {theirs_mb:,.0f} MB, "
        f"ratio {ours / theirs:.1f}x time"
    )


if __name__ == "__main__":
    main()
