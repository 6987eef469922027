"""Paired model comparison: DeLong's test against its O(mn) definition, its size under the null hypothesis, and the
paired identity bootstrap against literally rebuilt pairs scored by both models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import norm

from faceval.models.scoring import Similarity, all_pair_scores
from faceval.stats.bootstrap import identity_multiplicities, percentile_interval
from faceval.stats.comparison import (
    compare_models,
    compare_scores,
    comparison_summary_line,
    delong_test,
    unscorable_comparisons,
)
from faceval.stats.metrics import ScoreTable, roc_auc

from test_bootstrap import rebuilt_pairs


def delong_by_definition(scores_a, scores_b, genuine):
    """DeLong et al. (1988) as written: placement values from every genuine x impostor comparison."""
    genuine = np.asarray(genuine, dtype=bool)
    v10, v01, aucs = [], [], []
    for scores in (np.asarray(scores_a), np.asarray(scores_b)):
        x, y = scores[genuine], scores[~genuine]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    m, n = genuine.sum(), (~genuine).sum()
    s10, s01 = np.cov(v10), np.cov(v01)
    contrast = np.array([1.0, -1.0])
    variance = contrast @ (s10 / m + s01 / n) @ contrast
    z = (aucs[0] - aucs[1]) / np.sqrt(variance)
    return aucs, variance, z, 2 * norm.sf(abs(z))


@pytest.mark.parametrize("seed", range(6))
def test_delong_equals_its_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    genuine = rng.random(300) < 0.2
    scores_a = np.round(genuine * 1.0 + rng.normal(size=300), 1)  # rounding makes ties
    scores_b = np.round(genuine * 0.7 + 0.5 * scores_a + rng.normal(size=300), 1)
    result = delong_test(scores_a, scores_b, genuine)
    aucs, variance, z, p = delong_by_definition(scores_a, scores_b, genuine)
    assert result.auc_a == pytest.approx(aucs[0], abs=1e-12)
    assert result.auc_b == pytest.approx(aucs[1], abs=1e-12)
    assert result.auc_a == pytest.approx(roc_auc(ScoreTable.from_scores(scores_a, genuine)), abs=1e-12)
    assert result.variance == pytest.approx(variance, rel=1e-9)
    assert result.z == pytest.approx(z, rel=1e-9)
    assert result.p == pytest.approx(p, rel=1e-9)


def test_delong_rejects_at_its_nominal_rate_under_the_null():
    """Independent pairs, two correlated models with the same AUC: p < 0.05 in about 5 % of 400 data sets."""
    rng = np.random.default_rng(11)
    rejections = 0
    for _ in range(400):
        genuine = rng.random(400) < 0.25
        latent = genuine * 1.2 + rng.normal(size=400)
        scores_a = latent + rng.normal(scale=0.8, size=400)
        scores_b = latent + rng.normal(scale=0.8, size=400)
        rejections += delong_test(scores_a, scores_b, genuine).p < 0.05
    assert 0.025 <= rejections / 400 <= 0.08


def test_delong_of_identical_models():
    scores = np.array([0.9, 0.7, 0.4, 0.2, 0.1])
    result = delong_test(scores, scores, [1, 1, 0, 1, 0])
    assert (result.z, result.p, result.variance) == (0.0, 1.0, 0.0)


def two_models(seed: int, n_identities: int = 6, max_images: int = 4):
    """Per-image score matrices of two models on the same images, on a coarse grid (ties)."""
    rng = np.random.default_rng(seed)
    identity = np.repeat(np.arange(n_identities), rng.integers(2, max_images + 1, size=n_identities))
    same = identity[:, None] == identity[None, :]
    matrices = []
    for strength in (3, 1):
        raw = rng.integers(0, 6, size=(identity.size, identity.size)) + strength * same
        upper = np.triu(raw, 1) / 6
        matrices.append(upper + upper.T)
    return identity, matrices


def test_paired_bootstrap_equals_rebuilt_pairs_scored_by_both_models():
    identity, (matrix_a, matrix_b) = two_models(5)
    first, second = np.triu_indices(identity.size, k=1)
    genuine = identity[first] == identity[second]
    result = compare_models(
        matrix_a[first, second],
        matrix_b[first, second],
        genuine,
        identity[first],
        identity[second],
        n_resamples=40,
        seed=9,
        names=("strong", "weak"),
    )
    differences = []
    for multiplicity in identity_multiplicities(np.zeros(identity.max() + 1, dtype=np.int64), 40, seed=9):
        scores_a, rebuilt_genuine = rebuilt_pairs(identity, matrix_a, multiplicity)
        scores_b, _ = rebuilt_pairs(identity, matrix_b, multiplicity)
        if rebuilt_genuine.any() and not rebuilt_genuine.all():
            table_a = ScoreTable.from_scores(scores_a, rebuilt_genuine)
            table_b = ScoreTable.from_scores(scores_b, rebuilt_genuine)
            differences.append(roc_auc(table_a) - roc_auc(table_b))
    expected = percentile_interval(differences)
    assert (result.ci_low, result.ci_high) == (expected.low, expected.high)
    assert result.interval.n_valid == len(differences)
    assert result.auc_a == roc_auc(ScoreTable.from_scores(matrix_a[first, second], genuine))
    assert result.difference == result.auc_a - result.auc_b
    document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert document["model_a"] == "strong" and document["ci"] == [result.ci_low, result.ci_high]


def test_a_clearly_better_model_is_found_better_and_identical_models_are_not():
    identity, (matrix_a, matrix_b) = two_models(6, n_identities=20, max_images=5)
    first, second = np.triu_indices(identity.size, k=1)
    genuine = identity[first] == identity[second]
    args = (genuine, identity[first], identity[second])
    better = compare_models(matrix_a[first, second], matrix_b[first, second], *args, n_resamples=1000)
    assert better.difference > 0 and better.ci_low > 0 and better.delong_p < 1e-6
    same = compare_models(matrix_a[first, second], matrix_a[first, second], *args, n_resamples=200)
    assert (same.difference, same.ci_low, same.ci_high, same.delong_p) == (0.0, 0.0, 0.0, 1.0)
    skipped = compare_models(matrix_a[first, second], matrix_b[first, second], *args, n_resamples=0)
    assert skipped.interval is None and skipped.to_dict()["ci"] is None


def test_models_must_score_the_same_pairs():
    with pytest.raises(ValueError, match="same pairs"):
        compare_models([0.1, 0.2, 0.3], [0.1, 0.2], [1, 0, 0], [0, 0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="at least 2 genuine"):
        delong_test([0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [1, 0, 0])


def scored_models(models, identities):
    """Each model's scores of all pairs, and the pairs' genuine flags and identity codes (all pairs i < j)."""
    pairs = {name: all_pair_scores(vectors, identities, similarity) for name, vectors, similarity in models}
    some = next(iter(pairs.values()), None)
    first, second = (some.first, some.second) if some is not None else (np.zeros(0, int), np.zeros(0, int))
    genuine = identities[first] == identities[second]
    return [(name, pairs[name].scores) for name in pairs], genuine, identities[first], identities[second]


def test_compare_scores_compares_every_pair_of_models_on_the_same_pairs():
    rng = np.random.default_rng(3)
    identities = np.repeat(np.arange(10), 3)
    base = rng.normal(size=(10, 8))[identities]
    models = [
        ("sharp", base + rng.normal(scale=0.3, size=base.shape), Similarity.COSINE),
        ("blurred", base + rng.normal(scale=1.0, size=base.shape), Similarity.EUCLIDEAN),
        ("noise", rng.normal(size=base.shape), Similarity.COSINE),
    ]
    scored, genuine, first_id, second_id = scored_models(models, identities)
    strata = (np.arange(10) >= 5).astype(int)  # resampled within groups
    results = compare_scores(scored, genuine, first_id, second_id, strata, n_resamples=100, seed=2)
    assert [(r.name_a, r.name_b) for r in results] == [("sharp", "blurred"), ("sharp", "noise"), ("blurred", "noise")]
    expected = compare_models(
        scored[0][1], scored[2][1], genuine, first_id, second_id, n_resamples=100, seed=2, strata=strata
    )
    assert (results[1].ci_low, results[1].ci_high, results[1].delong_p) == (
        expected.ci_low,
        expected.ci_high,
        expected.delong_p,
    )


@pytest.mark.parametrize(
    ("identities", "genuine", "impostor"),
    [([0, 0, 1, 2], 1, 5), ([0, 0, 1, 1], 2, 4), ([0, 0, 0, 1], 3, 3), ([0, 1, 2, 3], 0, 6), ([0, 0, 0], 3, 0)],
)
def test_too_few_pairs_to_compare_give_an_entry_that_says_why(identities, genuine, impostor):
    """Thin common pairs made DeLong's test (or the AUC) raise, which aborted the whole run."""
    identities = np.array(identities)
    rng = np.random.default_rng(0)
    models = [(name, rng.normal(size=(identities.size, 4)), Similarity.COSINE) for name in ("a", "b", "c")]
    results = compare_scores(*scored_models(models, identities), np.zeros(identities.max() + 1, int), n_resamples=50)
    if genuine == 0 or impostor == 0:
        # Without scores (the streaming intervals' case), the same entries.
        assert unscorable_comparisons(["a", "b", "c"], genuine, impostor, n_resamples=50) == results
    assert [(r.name_a, r.name_b) for r in results] == [("a", "b"), ("a", "c"), ("b", "c")]
    for result in results:
        document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
        assert (document["n_genuine"], document["n_impostor"]) == (genuine, impostor)
        line = comparison_summary_line(document)
        if genuine == 0 or impostor == 0:
            assert result.auc_a is None and result.difference is None and result.interval is None
            assert result.delong_p is None and result.note == (
                f"an AUC needs genuine and impostor pairs; the common pairs have {genuine} genuine and {impostor} "
                "impostor"
            )
            assert line == f"{result.name_a} - {result.name_b}: not compared ({result.note})"
        elif genuine < 2 or impostor < 2:
            assert result.difference == result.auc_a - result.auc_b and result.interval is not None
            assert result.delong_z is None and result.delong_p is None and document["delong_z"] is None
            assert result.note == (
                f"DeLong's test needs at least 2 genuine and 2 impostor pairs, got {genuine} and {impostor}: no z or p"
            )
            assert "DeLong p not computed" in line and result.note in line
        else:
            assert result.note is None and line.endswith(f"DeLong p {result.delong_p:.2g}")


def test_one_image_or_none_gives_no_error():
    for size in (0, 1):
        vectors = np.zeros((size, 4)) + 1.0
        models = [("a", vectors, Similarity.COSINE), ("b", vectors, Similarity.COSINE)]
        (result,) = compare_scores(*scored_models(models, np.zeros(size, dtype=np.int64)), n_resamples=10)
        assert result.difference is None and result.note is not None
