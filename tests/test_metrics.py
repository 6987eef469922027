"""Metrics against independent oracles: scikit-learn, brute-force loops, and hand-worked small cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from faceval.models.scoring import Similarity
from faceval.stats import metrics
from faceval.stats.metrics import (
    ScoreCounts,
    ScoreTable,
    best_f1,
    equal_error_rate,
    readable_sweep,
    roc_auc,
    roc_curve,
    seed_grid,
    sweep_at,
    tar_at_far,
    threshold_sweep,
    verification_summary,
)

# (number of pairs, share of genuine pairs): small to medium, balanced to face-recognition-like imbalance.
SIZES = [(2, 0.5), (5, 0.4), (40, 0.3), (300, 0.1), (2_000, 0.03), (20_000, 0.02)]


def tied_scores(n: int, genuine_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores rounded to 2 decimals (many ties, also across labels), with at least one pair of each label."""
    rng = np.random.default_rng(seed)
    genuine = rng.random(n) < genuine_share
    genuine[0], genuine[-1] = True, False
    scores = np.round(rng.normal(size=n) + 1.2 * genuine, 2)
    return scores, genuine


def brute_force_auc(scores: np.ndarray, genuine: np.ndarray) -> float:
    """Mann-Whitney over every genuine x impostor pair, in integers."""
    g, i = scores[genuine], scores[~genuine]
    twice = 2 * int((g[:, None] > i[None, :]).sum()) + int((g[:, None] == i[None, :]).sum())
    return twice / (2 * g.size * i.size)


def assert_tables_equal(actual: ScoreTable, expected: ScoreTable) -> None:
    np.testing.assert_array_equal(actual.thresholds, expected.thresholds)
    np.testing.assert_array_equal(actual.genuine, expected.genuine)
    np.testing.assert_array_equal(actual.impostor, expected.impostor)


# --- ScoreTable and ScoreCounts ----------------------------------------------------------------------------


def test_table_counts_each_distinct_score() -> None:
    table = ScoreTable.from_scores([0.5, 0.9, 0.5, 0.5, 0.1, 0.9], [1, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(table.thresholds, [0.9, 0.5, 0.1])
    np.testing.assert_array_equal(table.genuine, [1, 2, 0])
    np.testing.assert_array_equal(table.impostor, [1, 1, 1])
    np.testing.assert_array_equal(table.genuine_accepted, [1, 3, 3])
    np.testing.assert_array_equal(table.impostor_accepted, [1, 2, 3])
    assert (table.n_genuine, table.n_impostor, len(table)) == (3, 3, 3)
    with pytest.raises(ValueError, match="read-only"):
        table.genuine[0] = 5


@pytest.mark.parametrize(("n", "share"), SIZES)
def test_streaming_chunks_and_merges_equal_one_shot(n: int, share: float, monkeypatch) -> None:
    scores, genuine = tied_scores(n, share, seed=n)
    expected = ScoreTable.from_scores(scores, genuine)
    # Tiny buffers force compaction (and merging of compacted parts) many times along the way.
    for compact_min in (1, 7, 1 << 22):
        monkeypatch.setattr(metrics, "_COMPACT_MIN", compact_min)
        rng = np.random.default_rng(n + compact_min)
        cuts = np.sort(rng.integers(0, n + 1, size=rng.integers(0, 12)))
        states = [ScoreCounts() for _ in range(3)]
        for k, (lo, hi) in enumerate(zip(np.r_[0, cuts], np.r_[cuts, n], strict=True)):
            states[k % 3].update(scores[lo:hi], genuine[lo:hi].astype(int))
        states[1].merge(states[2])
        states[0].merge(states[1])
        assert_tables_equal(states[0].compute(), expected)
        assert (states[0].n_genuine, states[0].n_impostor) == (int(genuine.sum()), int((~genuine).sum()))


def test_state_keeps_counting_after_compute_and_merge_leaves_other_unchanged() -> None:
    first, second = ScoreCounts(), ScoreCounts()
    first.update([0.3, 0.7], [True, False])
    second.update([0.7, 0.1], [True, True])
    first.merge(second)
    assert_tables_equal(second.compute(), ScoreTable.from_scores([0.7, 0.1], [True, True]))
    first.compute()
    first.update([0.3], [False])
    expected = ScoreTable.from_scores([0.3, 0.7, 0.7, 0.1, 0.3], [True, False, True, True, False])
    assert_tables_equal(first.compute(), expected)


def test_merging_a_state_into_itself_doubles_it() -> None:
    counts = ScoreCounts()
    counts.update([0.2, 0.4], [True, False])
    counts.merge(counts)
    assert_tables_equal(counts.compute(), ScoreTable.from_scores([0.2, 0.4, 0.2, 0.4], [1, 0, 1, 0]))


def test_caller_arrays_changed_after_update_do_not_reach_the_state() -> None:
    scores, genuine = np.array([0.1, 0.2]), np.array([True, False])
    counts = ScoreCounts()
    counts.update(scores, genuine)
    scores[:] = 9.0
    genuine[:] = True
    np.testing.assert_array_equal(counts.compute().thresholds, [0.2, 0.1])


@pytest.mark.parametrize(
    ("scores", "genuine", "message"),
    [
        ([0.1, 0.2], [True], "different lengths: 2 and 1"),
        ([0.1, np.nan, np.nan], [1, 0, 1], "2 NaN and 0 infinite values, the first at index 1"),
        ([0.1, -np.inf], [1, 0], "0 NaN and 1 infinite values"),
        ([0.1, 0.2], [1, 2], "got 2 at index 1"),
        ([0.1, 0.2], [0.0, 0.5], "got 0.5 at index 1"),
        ([0.1, 0.2], ["yes", "no"], "0/1 or bool"),
        (["a", "b"], [1, 0], "real numbers"),
        ([[0.1, 0.2]], [[1, 0]], "1-D"),
    ],
)
def test_update_rejects_bad_input(scores, genuine, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScoreCounts().update(scores, genuine)


def test_table_rejects_inconsistent_arrays() -> None:
    with pytest.raises(ValueError, match="descending"):
        ScoreTable(np.array([0.1, 0.2]), np.array([1, 0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="descending"):
        ScoreTable(np.array([0.2, 0.2]), np.array([1, 0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="at least one pair"):
        ScoreTable(np.array([0.2, 0.1]), np.array([1, 0]), np.array([0, 0]))
    with pytest.raises(ValueError, match="integers"):
        ScoreTable(np.array([0.2]), np.array([1.0]), np.array([0.0]))
    with pytest.raises(ValueError, match="one length"):
        ScoreTable(np.array([0.2, 0.1]), np.array([1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="finite"):
        ScoreTable(np.array([np.inf]), np.array([1]), np.array([0]))


FIGURES = [
    roc_curve,
    roc_auc,
    equal_error_rate,
    threshold_sweep,
    verification_summary,
    lambda table: tar_at_far(table, 1e-3),
    lambda table: sweep_at(table, [0.5]),
]


@pytest.mark.parametrize("figure", FIGURES)
@pytest.mark.parametrize(
    ("scores", "genuine", "message"),
    [
        ([0.1, 0.2], [False, False], "got 0 genuine and 2 impostor pairs"),
        ([0.1, 0.2, 0.3], [True, True, True], "got 3 genuine and 0 impostor pairs"),
        ([], [], "got 0 genuine and 0 impostor pairs"),
    ],
)
def test_figures_need_both_kinds_of_pair(figure, scores, genuine, message: str) -> None:
    table = ScoreTable.from_scores(np.array(scores, dtype=float), np.array(genuine, dtype=bool))
    with pytest.raises(ValueError, match=message):
        figure(table)


# --- ROC and AUC ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "share"), SIZES)
def test_roc_curve_equals_sklearn_exactly(n: int, share: float) -> None:
    scores, genuine = tied_scores(n, share, seed=n + 1)
    curve = roc_curve(ScoreTable.from_scores(scores, genuine))
    fpr, tpr, thresholds = skm.roc_curve(genuine, scores, drop_intermediate=False)
    np.testing.assert_array_equal(curve.thresholds, thresholds)
    np.testing.assert_array_equal(curve.fmr, fpr)
    np.testing.assert_array_equal(curve.tmr, tpr)
    np.testing.assert_array_equal(curve.fnmr, 1.0 - tpr)


@pytest.mark.parametrize(("n", "share"), SIZES)
def test_roc_auc_equals_sklearn_and_mann_whitney(n: int, share: float) -> None:
    scores, genuine = tied_scores(n, share, seed=n + 2)
    auc = roc_auc(ScoreTable.from_scores(scores, genuine))
    assert abs(auc - skm.roc_auc_score(genuine, scores)) <= 1e-12
    if n <= 2_000:
        # Both sides are one division of the same two integers.
        assert auc == brute_force_auc(scores, genuine)


def test_roc_auc_of_hand_worked_ties() -> None:
    # genuine 0.9 beats both impostors (2), genuine 0.5 ties impostor 0.5 (0.5) and beats 0.1 (1): 3.5 / 4.
    assert roc_auc(ScoreTable.from_scores([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0])) == 0.875


def test_roc_auc_of_counts_too_large_for_int64() -> None:
    big = 2**40
    table = ScoreTable(np.array([2.0, 1.0, 0.0]), np.array([big, big, 0]), np.array([0, big, big]))
    # (2^40 * 2^41 + 0.5 * 2^40 * 2^40 + 2^40 * 2^40) / (2^41 * 2^41) = (2 + 0.5 + 1) / 4.
    assert table.n_genuine * table.n_impostor * 2 >= 2**63
    assert roc_auc(table) == pytest.approx(0.875, abs=1e-15)


# --- Threshold sweeps and best F1 -------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "share"), SIZES[:5])
def test_threshold_sweep_equals_sklearn_and_brute_force(n: int, share: float) -> None:
    scores, genuine = tied_scores(n, share, seed=n + 3)
    sweep = threshold_sweep(ScoreTable.from_scores(scores, genuine))
    np.testing.assert_array_equal(sweep.threshold, np.unique(scores)[::-1])
    for k, t in enumerate(sweep.threshold):
        predicted = scores >= t
        tp = sum(1 for s, g in zip(scores, genuine, strict=True) if s >= t and g)
        fp = sum(1 for s, g in zip(scores, genuine, strict=True) if s >= t and not g)
        n_g = int(genuine.sum())
        assert (sweep.tp[k], sweep.fp[k], sweep.fn[k], sweep.tn[k]) == (tp, fp, n_g - tp, n - n_g - fp)
        assert sweep.accuracy[k] == skm.accuracy_score(genuine, predicted)
        assert sweep.precision[k] == skm.precision_score(genuine, predicted)
        assert sweep.recall[k] == skm.recall_score(genuine, predicted)
        assert sweep.f1[k] == pytest.approx(skm.f1_score(genuine, predicted), abs=1e-15)
        assert sweep.f1[k] == pytest.approx(2 * tp / (2 * tp + fp + (n_g - tp)), abs=1e-15)
        assert sweep.fmr[k] == fp / (n - n_g)
        assert sweep.fnmr[k] == (n_g - tp) / n_g


@pytest.mark.parametrize(("n", "share"), SIZES[:5])
def test_sweep_at_arbitrary_thresholds_equals_sklearn(n: int, share: float) -> None:
    scores, genuine = tied_scores(n, share, seed=n + 4)
    table = ScoreTable.from_scores(scores, genuine)
    rng = np.random.default_rng(n)
    # Unsorted; some exactly on a score, some between scores, beyond both ends, and infinite.
    thresholds = np.concatenate(
        (rng.choice(scores, 5), rng.normal(size=5), [scores.max() + 1, scores.min() - 1, np.inf, -np.inf])
    )
    sweep = sweep_at(table, thresholds)
    np.testing.assert_array_equal(sweep.threshold, thresholds)
    for k, t in enumerate(thresholds):
        predicted = scores >= t
        assert sweep.tp[k] == np.sum(predicted & genuine)
        assert sweep.fp[k] == np.sum(predicted & ~genuine)
        assert sweep.accuracy[k] == skm.accuracy_score(genuine, predicted)
        assert sweep.precision[k] == skm.precision_score(genuine, predicted, zero_division=0)
        assert sweep.recall[k] == skm.recall_score(genuine, predicted)
        assert sweep.f1[k] == pytest.approx(skm.f1_score(genuine, predicted, zero_division=0), abs=1e-15)


def test_sweep_nothing_accepted_has_precision_zero() -> None:
    sweep = sweep_at(ScoreTable.from_scores([0.9, 0.1], [1, 0]), [np.inf, 1.0])
    np.testing.assert_array_equal(sweep.precision, [0.0, 0.0])
    np.testing.assert_array_equal(sweep.f1, [0.0, 0.0])
    np.testing.assert_array_equal(sweep.accuracy, [0.5, 0.5])


def test_sweep_rejects_inconsistent_fields() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.Sweep(np.array([0.5, 0.4]), np.array([1]), np.array([0]), 1, 1)
    with pytest.raises(ValueError, match="got 0 genuine and 3 impostor pairs"):
        metrics.Sweep(np.array([0.5]), np.array([0]), np.array([1]), 0, 3)


def test_sweep_at_rejects_bad_thresholds() -> None:
    table = ScoreTable.from_scores([0.9, 0.1], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        sweep_at(table, [0.5, np.nan])
    with pytest.raises(ValueError, match="1-D"):
        sweep_at(table, [[0.5]])


def test_seed_grid_sweep_reproduces_the_seed_loop() -> None:
    # The seed: for t in np.arange(0.1, 1.1, 0.01), predict "same" when distance <= t, score with sklearn.
    rng = np.random.default_rng(7)
    genuine = rng.random(3_000) < 0.05
    distances = np.abs(rng.normal(0.75, 0.15, size=3_000) - 0.35 * genuine)
    grid = seed_grid()
    # The seed's values, but exact decimals: the "0.60" row must accept a distance of exactly 0.6.
    np.testing.assert_allclose(grid, np.arange(0.1, 1.1, 0.01), rtol=0, atol=1e-12)
    assert grid.size == 100 and grid[50] == 0.6 and grid[-1] == 1.09
    table = ScoreTable.from_scores(-distances, genuine)
    sweep = sweep_at(table, Similarity.EUCLIDEAN.from_model_units(grid))
    for k, t in enumerate(grid):
        predicted = [1 if d <= t else 0 for d in distances]
        assert sweep.accuracy[k] == skm.accuracy_score(genuine, predicted)
        assert sweep.precision[k] == skm.precision_score(genuine, predicted, zero_division=0)
        assert sweep.recall[k] == skm.recall_score(genuine, predicted)
        assert sweep.f1[k] == pytest.approx(skm.f1_score(genuine, predicted), abs=1e-15)


@pytest.mark.parametrize(("n", "share"), SIZES[:5])
def test_best_f1_is_the_brute_force_optimum(n: int, share: float) -> None:
    scores, genuine = tied_scores(n, share, seed=n + 5)
    best = best_f1(threshold_sweep(ScoreTable.from_scores(scores, genuine)))
    candidates = []
    for t in np.unique(scores):
        predicted = scores >= t
        tp = int(np.sum(predicted & genuine))
        f1 = 2 * tp / (int(predicted.sum()) + int(genuine.sum()))
        candidates.append((f1, t))
    best_value = max(f1 for f1, _ in candidates)
    assert best.f1 == pytest.approx(best_value, abs=1e-15)
    # Among equal maxima, the strictest threshold.
    assert best.threshold == max(t for f1, t in candidates if abs(f1 - best_value) <= 1e-15)
    predicted = scores >= best.threshold
    assert best.precision == skm.precision_score(genuine, predicted)
    assert best.recall == skm.recall_score(genuine, predicted)
    assert best.accuracy == skm.accuracy_score(genuine, predicted)


def test_best_f1_ties_pick_the_highest_threshold_in_any_order() -> None:
    # F1 = 2 tp / (accepted + N_G), N_G = 2. At 0.9: 2 * 1 / (1 + 2) = 2/3. At 0.4: 2 * 2 / (4 + 2) = 2/3.
    # At 0.2: 2 * 2 / (5 + 2) = 4/7.
    table = ScoreTable.from_scores([0.9, 0.6, 0.5, 0.4, 0.2], [1, 0, 0, 1, 0])
    best = best_f1(sweep_at(table, [0.4, 0.2, 0.9]))
    assert (best.f1, best.threshold, best.precision, best.recall) == (2 / 3, 0.9, 1.0, 0.5)
    assert best_f1(threshold_sweep(table)).threshold == 0.9
    with pytest.raises(ValueError, match="at least one threshold"):
        best_f1(sweep_at(table, []))


# --- EER -------------------------------------------------------------------------------------------------


def test_eer_interpolates_between_neighbours() -> None:
    # genuine 0.9, 0.6, 0.6, 0.2 (N_G = 4); impostor 0.8, 0.6, 0.3, 0.1, 0.05 (N_I = 5).
    # threshold: FMR, FNMR, FMR - FNMR
    #   +inf:   0,   1,    -1
    #   0.9:    0,   3/4,  -0.75
    #   0.8:    1/5, 3/4,  -0.55   <- above
    #   0.6:    2/5, 1/4,  +0.15   <- below
    # share = 0.55 / (0.55 + 0.15) = 11/14; EER = 1/5 + 11/14 * 1/5 = 5/14 (= 3/4 - 11/14 * 1/2);
    # threshold = 0.8 + 11/14 * (0.6 - 0.8) = 9/14; low = max(1/5, 1/4) = 1/4, high = min(2/5, 3/4) = 2/5.
    eer = equal_error_rate(
        ScoreTable.from_scores([0.9, 0.6, 0.6, 0.2, 0.8, 0.6, 0.3, 0.1, 0.05], [1, 1, 1, 1, 0, 0, 0, 0, 0])
    )
    assert eer.value == pytest.approx(5 / 14, abs=1e-15)
    assert eer.threshold == pytest.approx(9 / 14, abs=1e-15)
    assert (eer.low, eer.high) == (0.25, 0.4)
    assert (eer.threshold_above, eer.threshold_below) == (0.8, 0.6)
    assert (eer.fmr_above, eer.fnmr_above, eer.fmr_below, eer.fnmr_below) == (0.2, 0.75, 0.4, 0.25)
    assert eer.low <= eer.value <= eer.high


def test_eer_exact_crossing_at_a_threshold() -> None:
    # genuine 0.9, 0.6; impostor 0.7, 0.2. At 0.7: FMR 1/2, FNMR 1/2 -> EER 0.5 exactly at 0.7.
    eer = equal_error_rate(ScoreTable.from_scores([0.9, 0.6, 0.7, 0.2], [1, 1, 0, 0]))
    assert (eer.value, eer.threshold, eer.low, eer.high) == (0.5, 0.7, 0.5, 0.5)
    assert eer.threshold_above == eer.threshold_below == 0.7


def test_eer_of_perfect_separation_is_zero() -> None:
    # At 0.8: FMR 0, FNMR 0.
    eer = equal_error_rate(ScoreTable.from_scores([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]))
    assert (eer.value, eer.threshold, eer.low, eer.high) == (0.0, 0.8, 0.0, 0.0)


def test_eer_when_crossing_lies_before_the_first_score() -> None:
    # One distinct score: +inf gives (FMR 0, FNMR 1), 0.5 gives (1, 0). Share 1/2: EER 0.5, reported at the
    # highest score; the bracket is everything: [max(0, 0), min(1, 1)].
    eer = equal_error_rate(ScoreTable.from_scores([0.5, 0.5, 0.5], [1, 1, 0]))
    assert (eer.value, eer.threshold, eer.low, eer.high) == (0.5, 0.5, 0.0, 1.0)
    assert eer.threshold_above == np.inf


@pytest.mark.parametrize(("n", "share"), SIZES)
def test_eer_lies_in_its_bracket_and_between_neighbours(n: int, share: float) -> None:
    scores, genuine = tied_scores(n, share, seed=n + 6)
    eer = equal_error_rate(ScoreTable.from_scores(scores, genuine))
    assert eer.low <= eer.value <= eer.high
    assert eer.threshold_below <= eer.threshold <= eer.threshold_above
    if eer.threshold_above == eer.threshold_below:
        assert eer.fmr_below == eer.fnmr_below == eer.value
    else:
        assert eer.fmr_above - eer.fnmr_above < 0 < eer.fmr_below - eer.fnmr_below


# --- TAR@FAR ---------------------------------------------------------------------------------------------


def tar_table() -> ScoreTable:
    # Descending: 0.95 i, 0.9 g, 0.85 i, 0.8 g, 0.75 i, 0.7 g, 0.65 i, 0.6 g, 0.55 i ... 0.05 i.
    impostor = [0.95, 0.85, 0.75, 0.65, 0.55, 0.45, 0.35, 0.25, 0.15, 0.05]
    genuine = [0.9, 0.8, 0.7, 0.6]
    return ScoreTable.from_scores(genuine + impostor, [1] * 4 + [0] * 10)


@pytest.mark.parametrize(
    ("far", "tar", "threshold", "fmr", "supported"),
    [
        # FMR <= 0.2 allows 2 impostors: lowest such threshold 0.8 (0.95, 0.85 above it); 0.9, 0.8 accepted.
        (0.2, 0.5, 0.8, 0.2, False),  # 10 < 3 / 0.2 = 15
        # 3 impostors: 0.7 (0.95, 0.85, 0.75); genuine 0.9, 0.8, 0.7 accepted.
        (0.3, 0.75, 0.7, 0.3, True),  # 10 >= 3 / 0.3 = 10
        # 1.5 impostors -> 1: 0.9 is the lowest threshold above only 0.95; FMR reached 0.1 < 0.15.
        (0.15, 0.25, 0.9, 0.1, False),
        # 0.5 impostors -> 0: even the top score 0.95 is an impostor, so only +inf: nothing accepted.
        (0.05, 0.0, np.inf, 0.0, False),
        (1.0, 1.0, 0.05, 1.0, True),
    ],
)
def test_tar_at_far_hand_worked(far: float, tar: float, threshold: float, fmr: float, supported: bool) -> None:
    result = tar_at_far(tar_table(), far)
    assert (result.far, result.tar, result.threshold, result.fmr) == (far, tar, threshold, fmr)
    assert result.fnmr == 1.0 - tar
    assert (result.n_impostor, result.supported) == (10, supported)


@pytest.mark.parametrize(("n_impostor", "supported"), [(2_999, False), (3_000, True)])
def test_tar_at_far_rule_of_three(n_impostor: int, supported: bool) -> None:
    table = ScoreTable(np.array([1.0, 0.0]), np.array([1, 0]), np.array([0, n_impostor]))
    assert tar_at_far(table, 1e-3).supported is supported


@pytest.mark.parametrize(("n", "share"), SIZES)
def test_tar_at_far_is_the_lowest_threshold_within_far(n: int, share: float) -> None:
    scores, genuine = tied_scores(n, share, seed=n + 7)
    n_i = int((~genuine).sum())
    for far in (1e-3, 0.01, 0.1, 0.5):
        result = tar_at_far(ScoreTable.from_scores(scores, genuine), far)
        allowed = [t for t in np.unique(scores) if np.sum((scores >= t) & ~genuine) / n_i <= far]
        threshold = min(allowed) if allowed else np.inf
        assert result.threshold == threshold
        assert result.tar == np.sum((scores >= threshold) & genuine) / genuine.sum()
        assert result.fmr == np.sum((scores >= threshold) & ~genuine) / n_i


@pytest.mark.parametrize("far", [0.0, -0.1, 1.5, np.nan])
def test_tar_at_far_rejects_bad_far(far: float) -> None:
    with pytest.raises(ValueError, match="far must be in"):
        tar_at_far(tar_table(), far)


# --- Summary ---------------------------------------------------------------------------------------------


def test_verification_summary_is_strict_json_and_matches_the_figures() -> None:
    scores, genuine = tied_scores(20_000, 0.02, seed=11)
    table = ScoreTable.from_scores(scores, genuine)
    summary = verification_summary(table)
    json.dumps(summary, allow_nan=False)
    assert list(summary["tar_at_far"]) == ["1e-1", "1e-2", "1e-3", "1e-4", "1e-5", "1e-6"]
    assert summary["auc"] == roc_auc(table)
    assert summary["eer"]["value"] == equal_error_rate(table).value
    assert summary["best_f1"]["f1"] == best_f1(threshold_sweep(table)).f1
    assert summary["tar_at_far"]["1e-2"]["tar"] == tar_at_far(table, 1e-2).tar
    assert (summary["n_genuine"], summary["n_impostor"]) == (table.n_genuine, table.n_impostor)
    # 19,6xx impostors support 1e-3 (>= 3,000) but not 1e-4 (< 30,000).
    assert summary["tar_at_far"]["1e-3"]["supported"] is True
    assert summary["tar_at_far"]["1e-4"]["supported"] is False


def test_verification_summary_unreachable_far_has_no_threshold() -> None:
    summary = verification_summary(tar_table(), fars=[0.05, 2.5e-1])
    assert summary["tar_at_far"]["5e-2"]["threshold"] is None
    assert summary["tar_at_far"]["5e-2"]["tar"] == 0.0
    assert summary["tar_at_far"]["2.5e-1"]["threshold"] == 0.8


def test_readable_sweep_is_bounded_and_loses_no_visible_change():
    rng = np.random.default_rng(3)
    genuine = rng.random(1_000_000) < 0.01
    scores = np.where(genuine, rng.normal(2, 1, genuine.size), rng.normal(0, 1, genuine.size))
    table = ScoreTable.from_scores(scores, genuine)
    full, readable = threshold_sweep(table), readable_sweep(table)
    assert len(full) == 1_000_000 and len(readable) < 3000
    # Every kept row is a row of the full sweep, counts and all.
    rows = np.searchsorted(-full.threshold, -readable.threshold)
    np.testing.assert_array_equal(full.tp[rows], readable.tp)
    np.testing.assert_array_equal(full.fp[rows], readable.fp)
    # A dropped row reads like the kept row above it: FNMR within 0.1 point, FMR within 1/100 decade.
    above = rows[np.searchsorted(rows, np.arange(len(full)), side="right") - 1]
    assert np.all(np.abs(full.fnmr - full.fnmr[above]) < 1e-3)
    positive = full.fmr[above] > 0
    assert np.all(np.abs(np.log10(full.fmr[positive] / full.fmr[above][positive])) < 0.01)
    # The threshold of every FMR decade and the best F1 are there.
    for far in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5):
        assert tar_at_far(table, far).threshold in set(readable.threshold.tolist())
    assert best_f1(readable).f1 == best_f1(full).f1
