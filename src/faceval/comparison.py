"""Paired comparison of two models scored on the same pairs: AUC difference, its identity-bootstrap interval,
and DeLong's test for correlated ROC curves.

The interval comes from the identity-level bootstrap of `faceval.bootstrap` (both AUCs recomputed on the same
resample of identities, so the interval is paired). DeLong's test (DeLong, DeLong & Clarke-Pearson 1988, with
the O(n log n) midrank algorithm of Sun & Xu 2014) treats the pairs as independent: where pairs share identities,
as they do here, its variance is too small and its p-value too optimistic. Read the bootstrap interval first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata

from faceval.bootstrap import (
    CONFIDENCE,
    DEFAULT_RESAMPLES,
    MAX_BOOTSTRAP_PAIRS,
    Interval,
    SortedPairs,
    identity_multiplicities,
    identity_strata,
    percentile_interval,
)
from faceval.metrics import ScoreTable, roc_auc, validated_scores
from faceval.scoring import Similarity, all_pair_scores


@dataclass(frozen=True)
class DeLong:
    """DeLong's test of ``AUC_a == AUC_b`` on the same pairs: the z statistic, its two-sided p-value, and the
    estimated variance of the difference."""

    auc_a: float
    auc_b: float
    variance: float
    z: float
    p: float


def delong_test(scores_a: Any, scores_b: Any, genuine: Any) -> DeLong:
    """DeLong's test for two correlated ROC curves (same pairs, two models), by Sun & Xu's midrank algorithm.

    Ties count half, as in `faceval.metrics.roc_auc`. When the difference has zero variance (identical rankings)
    ``z`` is 0 and ``p`` is 1 if the AUCs are equal.

    >>> result = delong_test([0.9, 0.8, 0.3, 0.1], [0.9, 0.2, 0.3, 0.1], [1, 1, 0, 0])
    >>> result.auc_a, result.auc_b, round(result.p, 4)
    (1.0, 0.75, 0.4795)
    """
    scores_a, genuine = validated_scores(scores_a, genuine)
    scores_b, _ = validated_scores(scores_b, genuine)
    if scores_a.shape != scores_b.shape:
        raise ValueError(f"both models need scores of the same pairs: {scores_a.size} and {scores_b.size} scores")
    n_genuine, n_impostor = int(genuine.sum()), int((~genuine).sum())
    if n_genuine < 2 or n_impostor < 2:
        raise ValueError(
            f"DeLong's test needs at least 2 genuine and 2 impostor pairs, got {n_genuine} and {n_impostor}"
        )
    # Structural components (placement values): for each genuine pair the share of impostors it beats, and for
    # each impostor the share of genuine pairs that beat it, both from midranks (Sun & Xu 2014, eq. 4-5).
    genuine_parts, impostor_parts = [], []
    for scores in (scores_a, scores_b):
        positives, negatives = scores[genuine], scores[~genuine]
        combined = rankdata(np.concatenate((positives, negatives)))
        genuine_parts.append((combined[:n_genuine] - rankdata(positives)) / n_impostor)
        impostor_parts.append(1.0 - (combined[n_genuine:] - rankdata(negatives)) / n_genuine)
    aucs = [float(part.mean()) for part in genuine_parts]
    covariance = np.cov(genuine_parts) / n_genuine + np.cov(impostor_parts) / n_impostor
    variance = float(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1])
    difference = aucs[0] - aucs[1]
    if variance <= 0.0:
        z = 0.0 if difference == 0.0 else float(np.copysign(np.inf, difference))
    else:
        z = difference / np.sqrt(variance)
    return DeLong(aucs[0], aucs[1], max(variance, 0.0), float(z), float(2.0 * norm.sf(abs(z))))


@dataclass(frozen=True)
class ModelComparison:
    """Model a against model b on the same pairs: AUCs, their difference ``a - b`` with a paired identity-bootstrap
    interval, and DeLong's z and p. The interval is None when no bootstrap ran (``n_resamples == 0``)."""

    name_a: str
    name_b: str
    auc_a: float
    auc_b: float
    difference: float
    ci_low: float | None
    ci_high: float | None
    delong_z: float
    delong_p: float
    n_resamples: int
    seed: int
    interval: Interval | None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``metrics.json`` (strict JSON: an infinite z is written as None)."""
        return {
            "model_a": self.name_a,
            "model_b": self.name_b,
            "auc_a": self.auc_a,
            "auc_b": self.auc_b,
            "difference": self.difference,
            "ci": None if self.interval is None else self.interval.to_list(),
            "confidence": CONFIDENCE,
            "n_resamples": self.n_resamples,
            "n_valid_resamples": None if self.interval is None else self.interval.n_valid,
            "seed": self.seed,
            "bootstrap": "paired identity bootstrap (identities resampled with replacement, both AUCs recomputed)",
            "delong_z": self.delong_z if np.isfinite(self.delong_z) else None,
            "delong_p": self.delong_p,
            "delong_note": "DeLong's test treats pairs as independent; pairs share identities, so its p-value is "
            "optimistic: rely on the bootstrap interval",
        }


def comparison_summary_line(entry: dict[str, Any]) -> str:
    """One terminal line from `ModelComparison.to_dict`.

    >>> comparison_summary_line({"model_a": "a", "model_b": "b", "difference": 0.04, "ci": [0.01, 0.07],
    ...                          "delong_p": 0.002, "n_resamples": 1000})
    'a - b: AUC difference +0.0400 [+0.0100, +0.0700] (paired identity bootstrap, 1000 resamples); DeLong p 0.002'
    """
    interval = "" if entry["ci"] is None else f" [{entry['ci'][0]:+.4f}, {entry['ci'][1]:+.4f}]"
    # A p-value below the smallest double reads 0.
    p = f"{entry['delong_p']:.2g}" if entry["delong_p"] > 0 else "< 1e-300"
    return (
        f"{entry['model_a']} - {entry['model_b']}: AUC difference {entry['difference']:+.4f}{interval} "
        f"(paired identity bootstrap, {entry['n_resamples']} resamples); DeLong p {p}"
    )


def compare_models(
    scores_a: Any,
    scores_b: Any,
    genuine: Any,
    first_id: Any,
    second_id: Any,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    strata: Any = None,
    names: tuple[str, str] = ("a", "b"),
) -> ModelComparison:
    """Compare two models' scores of the same pairs (``first_id``/``second_id``: identity codes of each pair's
    images; ``strata``: optional stratum code per identity, e.g. its group, to resample within).

    >>> rng = np.random.default_rng(0)
    >>> ids = np.repeat(np.arange(8), 3)
    >>> first, second = np.triu_indices(ids.size, k=1)
    >>> genuine = ids[first] == ids[second]
    >>> a = genuine + rng.normal(0, 0.5, first.size)
    >>> b = genuine + rng.normal(0, 2.0, first.size)
    >>> result = compare_models(a, b, genuine, ids[first], ids[second], n_resamples=200)
    >>> result.difference > 0, result.ci_low > 0, result.delong_p < 0.05
    (True, True, True)
    """
    if np.shape(scores_a) != np.shape(scores_b):
        raise ValueError(
            f"both models need scores of the same pairs: {np.size(scores_a)} and {np.size(scores_b)} scores"
        )
    pairs_a = SortedPairs(scores_a, genuine, first_id, second_id)
    pairs_b = SortedPairs(scores_b, genuine, first_id, second_id)
    auc_a = roc_auc(ScoreTable.from_scores(scores_a, genuine))
    auc_b = roc_auc(ScoreTable.from_scores(scores_b, genuine))
    delong = delong_test(scores_a, scores_b, genuine)
    interval = None
    if n_resamples:
        n_identities = max(pairs_a.n_identities, 1)
        strata = np.zeros(n_identities, dtype=np.int64) if strata is None else np.asarray(strata)
        multiplicities = identity_multiplicities(strata, n_resamples, seed)
        differences = pairs_a.resampled_figures(multiplicities).auc - pairs_b.resampled_figures(multiplicities).auc
        interval = percentile_interval(differences)
    return ModelComparison(
        name_a=names[0],
        name_b=names[1],
        auc_a=auc_a,
        auc_b=auc_b,
        difference=auc_a - auc_b,
        ci_low=None if interval is None else interval.low,
        ci_high=None if interval is None else interval.high,
        delong_z=delong.z,
        delong_p=delong.p,
        n_resamples=int(n_resamples),
        seed=int(seed),
        interval=interval,
    )


def compare_model_vectors(
    models: Sequence[tuple[str, np.ndarray, Similarity]],
    identities: Any,
    groups: Any = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    max_pairs: int = MAX_BOOTSTRAP_PAIRS,
) -> list[ModelComparison]:
    """Every pair of models, each given as ``(name, vectors of the same images, similarity)``, compared on all
    pairs of those images; identities resampled within ``groups`` (one label per image) when given.

    Empty when there are more than ``max_pairs`` pairs (every model's scores are held in memory at once).

    >>> rng = np.random.default_rng(1)
    >>> ids = np.repeat(np.arange(6), 3)
    >>> good = rng.normal(size=(6, 4))[ids] + rng.normal(scale=0.3, size=(18, 4))
    >>> poor = good + rng.normal(scale=1.5, size=(18, 4))
    >>> [c.name_a + " vs " + c.name_b for c in compare_model_vectors(
    ...     [("good", good, Similarity.COSINE), ("poor", poor, Similarity.COSINE)], ids, n_resamples=100)]
    ['good vs poor']
    """
    identities = np.asarray(identities)
    n_pairs = identities.size * (identities.size - 1) // 2
    if len(models) < 2 or n_pairs > max_pairs:
        return []
    scored = [(name, all_pair_scores(vectors, identities, similarity)) for name, vectors, similarity in models]
    first, second = scored[0][1].first, scored[0][1].second
    strata = None
    if groups is not None:
        _, codes = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        strata = identity_strata(identities, codes.reshape(-1))
    return [
        compare_models(
            pairs_a.scores,
            pairs_b.scores,
            pairs_a.genuine,
            identities[first],
            identities[second],
            n_resamples=n_resamples,
            seed=seed,
            strata=strata,
            names=(name_a, name_b),
        )
        for index, (name_a, pairs_a) in enumerate(scored)
        for name_b, pairs_b in scored[index + 1 :]
    ]
