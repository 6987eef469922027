"""Paired comparison of two models scored on the same pairs: AUC difference, its identity-bootstrap interval,
and DeLong's test for correlated ROC curves.

The interval comes from the identity-level bootstrap of `faceval.stats.bootstrap` (both AUCs recomputed on the same
resample of identities, so the interval is paired). DeLong's test (DeLong, DeLong & Clarke-Pearson 1988, with
the O(n log n) midrank algorithm of Sun & Xu 2014) treats the pairs as independent: where pairs share identities,
as they do here, its variance is too small and its p-value too optimistic. Read the bootstrap interval first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from faceval.stats.bootstrap import (
    CONFIDENCE,
    DEFAULT_RESAMPLES,
    Interval,
    SortedPairs,
    identity_multiplicities,
    percentile_interval,
)
from faceval.stats.influence import IdentityInfluences
from faceval.stats.metrics import ScoreTable, roc_auc, validated_scores

# DeLong's variance needs two placement values of each kind (a sample covariance of each).
_DELONG_MINIMUM = 2


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

    Ties count half, as in `faceval.stats.metrics.roc_auc`. When the difference has zero variance (identical rankings)
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
    if n_genuine < _DELONG_MINIMUM or n_impostor < _DELONG_MINIMUM:
        raise ValueError(
            f"DeLong's test needs at least {_DELONG_MINIMUM} genuine and {_DELONG_MINIMUM} impostor pairs, got "
            f"{n_genuine} and {n_impostor}"
        )
    from scipy.stats import rankdata  # scipy.stats costs about a second to import: only where a test runs

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
    return DeLong(aucs[0], aucs[1], max(variance, 0.0), float(z), math.erfc(abs(z) / math.sqrt(2.0)))


@dataclass(frozen=True)
class ModelComparison:
    """Model a against model b on the same pairs: AUCs, their difference ``a - b`` with a paired identity-bootstrap
    interval, and DeLong's z and p. The interval is None when no bootstrap ran (``n_resamples == 0``) or no resample
    had both kinds of pair.

    Data too thin to compare on give an entry all the same, with ``note`` saying why: without a genuine or an
    impostor pair the AUCs, their difference and DeLong's figures are None; with fewer than 2 of either kind the
    AUCs and the bootstrap interval are given but DeLong's z and p are None.
    """

    name_a: str
    name_b: str
    auc_a: float | None
    auc_b: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    delong_z: float | None
    delong_p: float | None
    n_resamples: int
    seed: int
    interval: Interval | None
    n_genuine: int = 0
    n_impostor: int = 0
    note: str | None = None
    method: str = "paired identity bootstrap (identities resampled with replacement, both AUCs recomputed)"
    test_note: str = (
        "DeLong's test treats pairs as independent; pairs share identities, so its p-value is optimistic: rely on "
        "the bootstrap interval"
    )

    def swapped(self) -> ModelComparison:
        """The same comparison read as model b against model a (difference and interval negated)."""
        interval = self.interval
        if interval is not None:
            interval = replace(interval, low=-interval.high, high=-interval.low)
        return replace(
            self,
            name_a=self.name_b,
            name_b=self.name_a,
            auc_a=self.auc_b,
            auc_b=self.auc_a,
            difference=None if self.difference is None else -self.difference,
            ci_low=None if self.ci_high is None else -self.ci_high,
            ci_high=None if self.ci_low is None else -self.ci_low,
            delong_z=None if self.delong_z is None else -self.delong_z,
            interval=interval,
        )

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
            "n_genuine": self.n_genuine,
            "n_impostor": self.n_impostor,
            "bootstrap": self.method,
            "delong_z": self.delong_z if self.delong_z is not None and np.isfinite(self.delong_z) else None,
            "delong_p": self.delong_p,
            "delong_note": self.test_note,
            "note": self.note,
        }


def comparison_summary_line(entry: dict[str, Any]) -> str:
    """One terminal line from `ModelComparison.to_dict`.

    >>> comparison_summary_line({"model_a": "a", "model_b": "b", "difference": 0.04, "ci": [0.01, 0.07],
    ...                          "delong_p": 0.002, "n_resamples": 1000})
    'a - b: AUC difference +0.0400 [+0.0100, +0.0700] (paired identity bootstrap, 1000 resamples); DeLong p 0.002'
    >>> comparison_summary_line({"model_a": "a", "model_b": "b", "difference": None, "ci": None, "delong_p": None,
    ...                          "n_resamples": 1000, "note": "no genuine pair"})
    'a - b: not compared (no genuine pair)'
    """
    note = entry.get("note")
    if entry["difference"] is None:
        return f"{entry['model_a']} - {entry['model_b']}: not compared ({note or 'no figures'})"
    interval = "" if entry["ci"] is None else f" [{entry['ci'][0]:+.4f}, {entry['ci'][1]:+.4f}]"
    if entry["delong_p"] is None:
        p = "not computed"
    else:
        # A p-value below the smallest double reads 0.
        p = f"{entry['delong_p']:.2g}" if entry["delong_p"] > 0 else "< 1e-300"
    line = (
        f"{entry['model_a']} - {entry['model_b']}: AUC difference {entry['difference']:+.4f}{interval} "
        f"(paired identity bootstrap, {entry['n_resamples']} resamples); DeLong p {p}"
    )
    return line if note is None else f"{line} ({note})"


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

    Never fails on thin data: see `ModelComparison` for what is left out (and said in its ``note``) when there are
    too few genuine or impostor pairs. Scores of different pairs, or labels that disagree with the identity codes,
    raise ValueError.

    >>> rng = np.random.default_rng(0)
    >>> ids = np.repeat(np.arange(8), 3)
    >>> first, second = np.triu_indices(ids.size, k=1)
    >>> genuine = ids[first] == ids[second]
    >>> a = genuine + rng.normal(0, 0.5, first.size)
    >>> b = genuine + rng.normal(0, 2.0, first.size)
    >>> result = compare_models(a, b, genuine, ids[first], ids[second], n_resamples=200)
    >>> result.difference > 0, result.ci_low > 0, result.delong_p < 0.05
    (True, True, True)
    >>> compare_models([0.9, 0.2], [0.8, 0.1], [True, False], [0, 0], [0, 1]).note
    "DeLong's test needs at least 2 genuine and 2 impostor pairs, got 1 and 1: no z or p"
    """
    if np.shape(scores_a) != np.shape(scores_b):
        raise ValueError(
            f"both models need scores of the same pairs: {np.size(scores_a)} and {np.size(scores_b)} scores"
        )
    pairs_a = SortedPairs(scores_a, genuine, first_id, second_id)
    pairs_b = SortedPairs(scores_b, genuine, first_id, second_id)
    n_genuine, n_impostor = pairs_a.n_genuine, pairs_a.n_impostor
    empty = _unscored(names, n_genuine, n_impostor, n_resamples, seed)
    if n_genuine == 0 or n_impostor == 0:
        return empty
    auc_a = roc_auc(ScoreTable.from_scores(scores_a, genuine))
    auc_b = roc_auc(ScoreTable.from_scores(scores_b, genuine))
    delong, note = None, None
    if n_genuine >= _DELONG_MINIMUM and n_impostor >= _DELONG_MINIMUM:
        delong = delong_test(scores_a, scores_b, genuine)
    else:
        note = (
            f"DeLong's test needs at least {_DELONG_MINIMUM} genuine and {_DELONG_MINIMUM} impostor pairs, got "
            f"{n_genuine} and {n_impostor}: no z or p"
        )
    interval = None
    if n_resamples:
        n_identities = max(pairs_a.n_identities, 1)
        strata = np.zeros(n_identities, dtype=np.int64) if strata is None else np.asarray(strata)
        multiplicities = identity_multiplicities(strata, n_resamples, seed)
        differences = pairs_a.resampled_figures(multiplicities).auc - pairs_b.resampled_figures(multiplicities).auc
        interval = percentile_interval(differences)
    return replace(
        empty,
        auc_a=auc_a,
        auc_b=auc_b,
        difference=auc_a - auc_b,
        ci_low=None if interval is None else interval.low,
        ci_high=None if interval is None else interval.high,
        delong_z=None if delong is None else delong.z,
        delong_p=None if delong is None else delong.p,
        interval=interval,
        note=note,
    )


def _unscored(names: tuple[str, str], n_genuine: int, n_impostor: int, n_resamples: int, seed: int) -> ModelComparison:
    """The entry of two models before any figure, with the note that there is no AUC where a kind of pair is
    missing."""
    return ModelComparison(
        name_a=names[0],
        name_b=names[1],
        auc_a=None,
        auc_b=None,
        difference=None,
        ci_low=None,
        ci_high=None,
        delong_z=None,
        delong_p=None,
        n_resamples=int(n_resamples),
        seed=int(seed),
        interval=None,
        n_genuine=n_genuine,
        n_impostor=n_impostor,
        note=None
        if n_genuine and n_impostor
        else f"an AUC needs genuine and impostor pairs; the common pairs have {n_genuine} genuine and "
        f"{n_impostor} impostor",
    )


def unscorable_comparisons(
    names: Sequence[str], n_genuine: int, n_impostor: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> list[ModelComparison]:
    """Every pair of models on pairs without a genuine or without an impostor pair: entries that say why there is
    no figure (as `compare_models` gives them), with no score needed.

    >>> [entry.note for entry in unscorable_comparisons(["a", "b"], 0, 6)]
    ['an AUC needs genuine and impostor pairs; the common pairs have 0 genuine and 6 impostor']
    """
    if n_genuine and n_impostor:
        raise ValueError("these pairs have both kinds: compare the models' scores (compare_scores)")
    return [
        _unscored((name_a, name_b), n_genuine, n_impostor, n_resamples, seed)
        for index, name_a in enumerate(names)
        for name_b in names[index + 1 :]
    ]


def compare_influences(
    models: Sequence[tuple[str, IdentityInfluences]],
    strata: Any,
    n_genuine: int,
    n_impostor: int,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> list[ModelComparison]:
    """Every pair of models from their per-identity AUC influences on the same pairs (`faceval.stats.influence`): the
    streaming counterpart of `compare_scores`, at any number of pairs.

    The difference's influence is the difference of the influences, so its replicates use the same identity
    multiplicities for both models (paired); z and p come from the identity-clustered variance
    ``sum_k (c_a,k - c_b,k)^2`` (Obuchowski 1997), which, unlike DeLong's, counts pairs that share identities.
    """
    multiplicities = identity_multiplicities(np.asarray(strata), n_resamples, seed) if n_resamples else None
    comparisons = []
    for index, (name_a, a) in enumerate(models):
        for name_b, b in models[index + 1 :]:
            influence = a.auc - b.auc
            difference = a.point_auc - b.point_auc
            interval = None
            if multiplicities is not None:
                replicates = [
                    difference + (block.astype(np.float64) - 1.0) @ influence
                    for block in np.array_split(multiplicities, max(1, n_resamples // 100))
                ]
                interval = percentile_interval(np.concatenate(replicates))
            error = float(np.sqrt(np.sum(influence**2)))
            z = difference / error if error > 0 else None
            comparisons.append(
                ModelComparison(
                    name_a=name_a,
                    name_b=name_b,
                    auc_a=a.point_auc,
                    auc_b=b.point_auc,
                    difference=difference,
                    ci_low=None if interval is None else interval.low,
                    ci_high=None if interval is None else interval.high,
                    delong_z=z,
                    delong_p=None if z is None else math.erfc(abs(z) / math.sqrt(2.0)),
                    n_resamples=int(n_resamples),
                    seed=int(seed),
                    interval=interval,
                    n_genuine=n_genuine,
                    n_impostor=n_impostor,
                    method="paired streaming identity influences (the paired identity bootstrap linearised: "
                    "difference + sum_k (m_k - 1)(c_a,k - c_b,k))",
                    test_note="z and p from the identity-clustered variance of the AUC difference (Obuchowski 1997): "
                    "pairs that share identities are counted as such",
                )
            )
    return comparisons


def compare_scores(
    models: Sequence[tuple[str, np.ndarray]],
    genuine: Any,
    first_id: Any,
    second_id: Any,
    strata: Any = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> list[ModelComparison]:
    """Every pair of models, each given as ``(name, scores)``, all scores of the same pairs in the same order (the
    scores one pass held, `faceval.stats.accumulators.HeldPairs`), compared by `compare_models` with the same identity
    multiplicities (``strata``: a stratum code per identity, e.g. its group, to resample within).

    Never fails on thin data: a pair of models that cannot be compared (no genuine or no impostor pair, or too few
    for DeLong's test) still gets its entry, with None figures and a ``note`` saying why (`ModelComparison`).

    >>> rng = np.random.default_rng(1)
    >>> ids = np.repeat(np.arange(6), 3)
    >>> first, second = np.triu_indices(ids.size, k=1)
    >>> genuine = ids[first] == ids[second]
    >>> models = [("good", genuine + rng.normal(0, 0.5, first.size)), ("poor", genuine + rng.normal(0, 2, first.size))]
    >>> results = compare_scores(models, genuine, ids[first], ids[second], n_resamples=100)
    >>> [(c.name_a, c.name_b) for c in results], results[0].difference > 0
    ([('good', 'poor')], True)
    """
    return [
        compare_models(
            scores_a,
            scores_b,
            genuine,
            first_id,
            second_id,
            n_resamples=n_resamples,
            seed=seed,
            strata=strata,
            names=(name_a, name_b),
        )
        for index, (name_a, scores_a) in enumerate(models)
        for name_b, scores_b in models[index + 1 :]
    ]
