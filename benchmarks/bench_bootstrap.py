"""The identity bootstrap: 1,000 resamples of a 1,000-image set (about 500,000 pairs) in seconds.

On synthetic dlib-like embeddings (those of ``bench_metrics.py``: 128-d, Euclidean distance):

1. `faceval.stats.bootstrap`: the pairs sorted once, 1,000 resamples of identities as multiplicities, AUC, EER,
   TAR@FAR=1e-3 and FNMR/FMR at dlib's distance 0.6 for every resample, 95 % percentile intervals;
2. the same resamples built literally (copies of the drawn identities' images, all their pairs scored again
   except pairs between two copies of one identity): a few of them, timed and extrapolated to 1,000, and
   checked to give exactly the same figures;
3. `faceval.stats.groups.group_report` end to end on the same set split into two groups (pairs scored, per-group and
   overall figures, global threshold, 1,000 resamples within each group).

    .venv/bin/python benchmarks/bench_bootstrap.py            # 1,000 images, 1,000 resamples
    .venv/bin/python benchmarks/bench_bootstrap.py --quick    # 400 images
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from bench_metrics import IMAGES_PER_IDENTITY, synthetic_embeddings

from faceval.models.scoring import Similarity, all_pair_scores, identity_codes, iter_pair_chunks
from faceval.output.group_presentation import group_report_dict
from faceval.stats.bootstrap import SortedPairs, identity_multiplicities, percentile_interval
from faceval.stats.groups import GroupOptions, group_report
from faceval.stats.metrics import ScoreTable, equal_error_rate, roc_auc, sweep_at, tar_at_far

SIMILARITY = Similarity.EUCLIDEAN
THRESHOLD = SIMILARITY.from_model_units(0.6)
FAR = 1e-3


def rebuilt_figures(vectors: np.ndarray, identities: np.ndarray, multiplicity: np.ndarray) -> list[float]:
    """One resample built literally: every copy of a drawn identity brings its images, all pairs are scored
    again, and pairs between two copies of the same identity are dropped."""
    copies = [(person, copy) for person in range(multiplicity.size) for copy in range(multiplicity[person])]
    images = [np.flatnonzero(identities == person) for person, _ in copies]
    rows = np.concatenate(images)
    instance = np.repeat(np.arange(len(copies)), [len(member) for member in images])
    person = identities[rows]
    pairs = all_pair_scores(vectors[rows], instance, SIMILARITY)
    kept = pairs.genuine | (person[pairs.first] != person[pairs.second])
    table = ScoreTable.from_scores(pairs.scores[kept], pairs.genuine[kept])
    at = sweep_at(table, [THRESHOLD])
    return [roc_auc(table), equal_error_rate(table).value, tar_at_far(table, FAR).tar, at.fnmr[0], at.fmr[0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--rebuilt", type=int, default=3, help="resamples also built literally (slow)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="400 images")
    args = parser.parse_args()
    if args.quick:
        args.images = 400
    n_identities = max(2, round(args.images / IMAGES_PER_IDENTITY))
    names, vectors = synthetic_embeddings(args.images, n_identities, 128, args.seed)
    identities = identity_codes(names)
    print(
        f"{args.images} images of {identities.max() + 1} identities; {args.resamples} resamples; cpus: {os.cpu_count()}"
    )

    start = time.perf_counter()
    pairs = all_pair_scores(vectors, identities, SIMILARITY)
    scoring = time.perf_counter() - start
    start = time.perf_counter()
    sorted_pairs = SortedPairs(pairs.scores, pairs.genuine, identities[pairs.first], identities[pairs.second])
    preparing = time.perf_counter() - start
    multiplicities = identity_multiplicities(np.zeros(identities.max() + 1, dtype=np.int64), args.resamples, args.seed)
    start = time.perf_counter()
    figures = sorted_pairs.resampled_figures(multiplicities, fars=(FAR,), thresholds=(THRESHOLD,))
    resampling = time.perf_counter() - start
    print(
        f"pairs: {len(sorted_pairs):,} ({sorted_pairs.n_genuine:,} genuine); scoring {scoring:.2f} s, "
        f"sorting once {preparing:.2f} s"
    )
    print(
        f"identity bootstrap, {args.resamples} resamples: {resampling:.2f} s "
        f"({1e3 * resampling / args.resamples:.2f} ms each)"
    )

    table = ScoreTable.from_scores(pairs.scores, pairs.genuine)
    at = sweep_at(table, [THRESHOLD])
    point = [roc_auc(table), equal_error_rate(table).value, tar_at_far(table, FAR).tar, at.fnmr[0], at.fmr[0]]
    columns = [figures.auc, figures.eer, figures.tar[:, 0], figures.fnmr[:, 0], figures.fmr[:, 0]]
    labels = ["AUC", "EER", f"TAR@FAR={FAR:g}", "FNMR at distance 0.6", "FMR at distance 0.6"]
    for label, value, column in zip(labels, point, columns, strict=True):
        interval = percentile_interval(column)
        print(
            f"  {label:<22} {value:.5f}  95 % CI [{interval.low:.5f}, {interval.high:.5f}]  ({interval.n_valid} valid)"
        )

    if args.rebuilt:
        start = time.perf_counter()
        for row in range(args.rebuilt):
            literal = rebuilt_figures(vectors, identities, multiplicities[row])
            engine = [column[row] for column in columns]
            if not np.allclose(literal, engine, rtol=0, atol=1e-12):
                raise SystemExit(f"resample {row}: literal {literal} != engine {engine}")
        each = (time.perf_counter() - start) / args.rebuilt
        total = each * args.resamples
        print(
            f"literal rebuild: {each:.2f} s per resample, {total:.0f} s for {args.resamples} (extrapolated); "
            f"{args.rebuilt} resamples checked equal; speed ratio {total / resampling:.0f}x"
        )

    groups = np.where(identities % 2 == 0, "even", "odd").astype(object)
    options = GroupOptions(target_fmr=FAR, threshold=0.6, n_resamples=args.resamples, seed=args.seed)
    start = time.perf_counter()
    report = group_report(iter_pair_chunks(vectors, identities, SIMILARITY), groups, identities, SIMILARITY, options)
    seconds = time.perf_counter() - start
    document = group_report_dict(report)
    print(f"group_report, 2 groups, scoring included: {seconds:.2f} s")
    for name, entry in document["groups"].items():
        print(
            f"  {name:<5} AUC {entry['auc']:.4f} {np.round(entry['auc_ci'], 4).tolist()}  FNMR at global "
            f"{entry['fnmr_at_global']:.4f} {np.round(entry['fnmr_at_global_ci'], 4).tolist()}  FMR at global "
            f"{entry['fmr_at_global']:.5f} {np.round(entry['fmr_at_global_ci'], 5).tolist()}"
        )
    chosen = document["global_threshold"]
    print(f"  global threshold: distance {chosen['threshold']:.4f}, FDR {chosen['fdr']:.4f}")


if __name__ == "__main__":
    main()
