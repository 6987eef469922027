"""The identity bootstrap engine against independent oracles: faceval.stats.metrics (unit weights), the pairs literally
repeated or rebuilt (weighted pairs, resamples), scikit-learn (weighted AUC), and coverage by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from faceval.stats import bootstrap
from faceval.stats.bootstrap import (
    SortedPairs,
    identity_multiplicities,
    identity_strata,
    percentile_interval,
    stratum_sizes,
)
from faceval.stats.metrics import ScoreTable, equal_error_rate, roc_auc, sweep_at, tar_at_far

FARS = (1e-3, 0.01, 0.1, 0.3, 1.0)


def tied_set(seed: int, n_identities: int = 7, max_images: int = 5, levels: int = 8):
    """Images of a few identities and a symmetric score matrix on a coarse grid (many ties), genuine higher."""
    rng = np.random.default_rng(seed)
    per_identity = rng.integers(1, max_images + 1, size=n_identities)
    identity = np.repeat(np.arange(n_identities), per_identity)
    n = identity.size
    raw = rng.integers(0, levels, size=(n, n)) + 3 * (identity[:, None] == identity[None, :])
    matrix = np.triu(raw, 1) / levels
    matrix = matrix + matrix.T
    first, second = np.triu_indices(n, k=1)
    return identity, matrix, first, second


def pairs_of(identity, matrix, first, second) -> SortedPairs:
    return SortedPairs(matrix[first, second], identity[first] == identity[second], identity[first], identity[second])


def reference(scores, genuine, thresholds):
    """Every figure from faceval.stats.metrics on a plain table."""
    table = ScoreTable.from_scores(scores, genuine)
    sweep = sweep_at(table, thresholds)
    return {
        "auc": roc_auc(table),
        "eer": equal_error_rate(table).value,
        "tar": [tar_at_far(table, far).tar for far in FARS],
        "fmr": sweep.fmr.tolist(),
        "fnmr": sweep.fnmr.tolist(),
    }


def assert_row_equals(figures, row, expected):
    assert figures.auc[row] == expected["auc"]
    assert figures.eer[row] == pytest.approx(expected["eer"], abs=1e-12)
    assert figures.tar[row].tolist() == expected["tar"]
    assert figures.fmr[row].tolist() == expected["fmr"]
    assert figures.fnmr[row].tolist() == expected["fnmr"]


@pytest.mark.parametrize("seed", range(12))
def test_unit_multiplicities_equal_metrics(seed):
    identity, matrix, first, second = tied_set(seed)
    pairs = pairs_of(identity, matrix, first, second)
    thresholds = [np.inf, 0.5, 3 / 8, 0.0, -np.inf, 1.25]
    figures = pairs.resampled_figures(np.ones((1, identity.max() + 1), dtype=np.int32), FARS, thresholds)
    scores, genuine = matrix[first, second], identity[first] == identity[second]
    assert_row_equals(figures, 0, reference(scores, genuine, thresholds))


def pair_weighted_figures(scores, genuine, weights, fars=(), thresholds=()):
    """Figures of the pairs each repeated ``weights[row, pair]`` times, through the identity engine: every pair gets
    an identity of its own (a genuine pair for both its images; an impostor pair for its first image, its second
    image being one identity shared by all and drawn once), so that the identity multiplicities are the pair
    weights. Resampling pairs (as if they were independent) is this with multinomial weights."""
    scores, genuine = np.asarray(scores), np.asarray(genuine, dtype=bool)
    own = np.arange(scores.size)
    pairs = SortedPairs(scores, genuine, own, np.where(genuine, own, scores.size))
    multiplicities = np.concatenate((weights, np.ones((len(weights), 1), dtype=weights.dtype)), axis=1)
    return pairs.resampled_figures(multiplicities.astype(np.int32), fars, thresholds)


@pytest.mark.parametrize("seed", range(8))
def test_weighted_pairs_equal_repeated_pairs(seed):
    identity, matrix, first, second = tied_set(seed + 100)
    scores, genuine = matrix[first, second], identity[first] == identity[second]
    rng = np.random.default_rng(seed)
    weights = rng.integers(0, 4, size=(5, scores.size))
    thresholds = [0.75, 0.25]
    figures = pair_weighted_figures(scores, genuine, weights, FARS, thresholds)
    for row, weight in enumerate(weights):
        expected = reference(np.repeat(scores, weight), np.repeat(genuine, weight), thresholds)
        assert_row_equals(figures, row, expected)
        assert figures.auc[row] == pytest.approx(roc_auc_score(genuine, scores, sample_weight=weight), abs=1e-12)


def rebuilt_pairs(identity, matrix, multiplicity, keep=None):
    """The resampled set built literally: every drawn copy of an identity brings all its images; pairs are
    formed between all images except images of two different copies of the same identity."""
    entries = [
        (image, person, copy)
        for person in range(multiplicity.size)
        for copy in range(multiplicity[person])
        for image in np.flatnonzero(identity == person)
    ]
    scores, genuine = [], []
    for a in range(len(entries)):
        for b in range(a + 1, len(entries)):
            (image_a, person_a, copy_a), (image_b, person_b, copy_b) = entries[a], entries[b]
            if person_a == person_b and copy_a != copy_b:
                continue
            if keep is not None and not keep(image_a, image_b):
                continue
            scores.append(matrix[image_a, image_b])
            genuine.append(person_a == person_b)
    return np.array(scores), np.array(genuine, dtype=bool)


@pytest.mark.parametrize("seed", range(6))
def test_resamples_equal_literally_rebuilt_pairs(seed):
    identity, matrix, first, second = tied_set(seed + 200, n_identities=6, max_images=4)
    strata = np.arange(identity.max() + 1) % 2  # two strata, resampled separately
    multiplicities = identity_multiplicities(strata, n_resamples=15, seed=seed)
    thresholds = [0.5, 0.125]
    figures = pairs_of(identity, matrix, first, second).resampled_figures(multiplicities, FARS, thresholds)
    for row, multiplicity in enumerate(multiplicities):
        scores, genuine = rebuilt_pairs(identity, matrix, multiplicity)
        if genuine.all() or not genuine.any():
            assert np.isnan(figures.auc[row]) and np.isnan(figures.eer[row])
            continue
        assert_row_equals(figures, row, reference(scores, genuine, thresholds))


def test_a_subset_of_pairs_resamples_like_its_rebuilt_subset():
    """Group figures use the pairs within the group with the same multiplicities."""
    identity, matrix, first, second = tied_set(300, n_identities=8, max_images=4)
    in_group = identity % 2 == 0
    subset = in_group[first] & in_group[second]
    pairs = pairs_of(identity, matrix, first[subset], second[subset])
    multiplicities = identity_multiplicities(identity_strata(identity, in_group), n_resamples=10, seed=3)
    figures = pairs.resampled_figures(multiplicities, FARS, [0.5])
    for row, multiplicity in enumerate(multiplicities):
        scores, genuine = rebuilt_pairs(identity, matrix, multiplicity, keep=lambda a, b: in_group[a] and in_group[b])
        if genuine.any() and not genuine.all():
            assert_row_equals(figures, row, reference(scores, genuine, [0.5]))


def test_multiplicities_draw_each_stratum_to_its_size():
    strata = np.array([0, 0, 0, 1, 1, 2])
    multiplicities = identity_multiplicities(strata, n_resamples=4000, seed=5)
    assert multiplicities.shape == (4000, 6) and multiplicities.dtype == np.int32
    assert (multiplicities[:, :3].sum(axis=1) == 3).all() and (multiplicities[:, 3:5].sum(axis=1) == 2).all()
    assert (multiplicities[:, 5] == 1).all()
    assert np.abs(multiplicities.mean(axis=0) - 1).max() < 0.05
    assert (multiplicities == identity_multiplicities(strata, n_resamples=4000, seed=5)).all()
    assert (multiplicities != identity_multiplicities(strata, n_resamples=4000, seed=6)).any()


def test_identity_strata_puts_an_identity_spanning_groups_with_most_of_its_images():
    assert identity_strata([0, 0, 1, 1, 2], [0, 0, 1, 1, 0]).tolist() == [0, 1, 0]
    # Identity 1 has one image in group 4 and one in 5 (a tie: the lower code); identity 3 has most in group 5.
    assert identity_strata([0, 1, 1, 2, 3, 3, 3], [4, 4, 5, 5, 4, 5, 5]).tolist() == [4, 4, 5, 5]
    assert identity_strata([0, 0, 2], [1, 1, 3]).tolist() == [1, -1, 3]  # code 1 has no image
    assert stratum_sizes([1, -1, 3, 3]) == {1: 1, 3: 2}
    assert identity_strata([], []).tolist() == []


def test_identities_spanning_groups_vary_between_resamples():
    """Per-image groups (age bands): every identity has its own combination of bands. Each combination was a stratum
    of one identity, always drawn once, so every resample equalled the data and the intervals had zero width."""
    identity = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5])
    band = np.array([0, 1, 1, 2, 0, 2, 0, 1, 2, 0, 0, 1, 1])
    strata = identity_strata(identity, band)
    assert strata.tolist() == [0, 1, 0, 0, 0, 1]  # the band of most images, the lower one on a tie
    multiplicities = identity_multiplicities(strata, n_resamples=200, seed=0)
    assert all(len(np.unique(multiplicities[:, k])) > 1 for k in range(6))
    rng = np.random.default_rng(0)
    matrix = np.triu(rng.random((identity.size, identity.size)) + 0.5 * (identity[:, None] == identity[None, :]), 1)
    first, second = np.triu_indices(identity.size, k=1)
    figures = pairs_of(identity, matrix, first, second).resampled_figures(multiplicities, thresholds=[0.75])
    for values in (figures.auc, figures.fmr[:, 0]):
        interval = percentile_interval(values)
        assert interval.low < interval.high


def test_blocks_and_threads_do_not_change_the_figures(monkeypatch):
    identity, matrix, first, second = tied_set(400, n_identities=10)
    pairs = pairs_of(identity, matrix, first, second)
    multiplicities = identity_multiplicities(np.zeros(10, dtype=np.int64), n_resamples=50, seed=1)
    whole = pairs.resampled_figures(multiplicities, FARS, [0.5], workers=1)
    monkeypatch.setattr(bootstrap, "_BLOCK_ELEMENTS", 1)
    blocked = pairs.resampled_figures(multiplicities, FARS, [0.5], workers=3)
    for name in ("auc", "eer", "tar", "fmr", "fnmr"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(blocked, name))


def test_the_identity_pair_table_gives_the_figures_of_two_gathers():
    """Few identities: impostor weights come from one gather in the table of identity-pair products; the figures
    are those of the two gathers and product (each pair's identities' multiplicities), to the last bit."""
    identity, matrix, first, second = tied_set(401, n_identities=9, max_images=8)
    pairs = pairs_of(identity, matrix, first, second)
    assert pairs._impostor_cell is not None  # 81 cells, more impostor pairs than that
    # Extra columns beyond the identities, as callers may pass, must be ignored by the table too.
    multiplicities = np.hstack(
        [identity_multiplicities(np.zeros(9, dtype=np.int64), n_resamples=40, seed=2), np.full((40, 2), 3, np.int32)]
    )
    table = pairs.resampled_figures(multiplicities, FARS, [0.25, 0.5], workers=1)
    pairs._impostor_cell = None
    gathered = pairs.resampled_figures(multiplicities, FARS, [0.25, 0.5], workers=1)
    for name in ("auc", "eer", "tar", "fmr", "fnmr"):
        np.testing.assert_array_equal(getattr(table, name), getattr(gathered, name))
    # Many identities (a table larger than the stream): the gathers.
    identity, matrix, first, second = tied_set(402, n_identities=40, max_images=1)
    assert pairs_of(identity, matrix, first, second)._impostor_cell is None


def test_undefined_resamples_are_nan_and_left_out_of_intervals():
    pairs = SortedPairs([0.9, 0.4, 0.3], [True, False, True], [0, 0, 1], [0, 1, 1])
    figures = pairs.resampled_figures(np.array([[1, 1], [2, 0], [0, 2]]), (0.5,), (0.35,))
    assert figures.auc[0] == 0.5 and np.isnan(figures.auc[1:]).all()
    assert np.isnan(figures.fmr[1:, 0]).all() and figures.fnmr[1:, 0].tolist() == [0.0, 1.0]
    interval = percentile_interval(figures.auc)
    assert (interval.low, interval.high, interval.n_valid, interval.n_resamples) == (0.5, 0.5, 1, 3)
    assert percentile_interval([np.nan]) is None


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="labelled genuine"):
        SortedPairs([0.5], [True], [0], [1])
    pairs = SortedPairs([0.5, 0.1], [True, False], [0, 0], [0, 1])
    with pytest.raises(ValueError, match="at least 2 columns"):
        pairs.resampled_figures(np.ones((3, 1), dtype=np.int32))
    with pytest.raises(ValueError, match="non-negative"):
        pairs.resampled_figures(-np.ones((3, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="far must be"):
        pairs.resampled_figures(np.ones((1, 2), dtype=np.int32), fars=(0.0,))


def simulated_set(rng, n_identities, images, mean, identity_sd, pair_sd, impostor_sd):
    """Scores with identity effects: genuine of identity k ~ a_k + e, impostor (k, l) ~ b_k + b_l + e; the pairs,
    and their scores and labels."""
    identity = np.repeat(np.arange(n_identities), images)
    first, second = np.triu_indices(identity.size, k=1)
    a = rng.normal(mean, identity_sd, n_identities)
    b = rng.normal(0.0, impostor_sd, n_identities)
    genuine = identity[first] == identity[second]
    scores = np.where(genuine, a[identity[first]], b[identity[first]] + b[identity[second]])
    scores = scores + rng.normal(0.0, pair_sd, first.size)
    return SortedPairs(scores, genuine, identity[first], identity[second]), scores, genuine


def test_identity_bootstrap_intervals_cover_the_true_values():
    """300 data sets of 60 identities x 2 images with known distributions: nominal 95 % intervals of AUC, FNMR and
    FMR at a fixed threshold cover the true value 90-99 % of the time. Resampling pairs instead (as if they were
    independent) gives FMR intervals far too narrow on the same data, so this check can tell the two apart."""
    mean, identity_sd, pair_sd, impostor_sd, threshold = 2.0, 1.0, 1.0, 0.5, 1.0
    genuine_sd = np.hypot(identity_sd, pair_sd)
    impostor_total_sd = np.sqrt(2 * impostor_sd**2 + pair_sd**2)
    truth = {
        "auc": norm.cdf(mean / np.hypot(genuine_sd, impostor_total_sd)),
        "fnmr": norm.cdf((threshold - mean) / genuine_sd),
        "fmr": norm.sf(threshold / impostor_total_sd),
    }
    rng = np.random.default_rng(2024)
    n_sets, n_pair_sets, n_identities = 300, 100, 60
    covered = {method: dict.fromkeys(truth, 0) for method in ("identities", "pairs")}
    for index in range(n_sets):
        pairs, scores, genuine = simulated_set(rng, n_identities, 2, mean, identity_sd, pair_sd, impostor_sd)
        multiplicities = identity_multiplicities(np.zeros(n_identities, dtype=np.int64), n_resamples=1000, seed=index)
        methods = [("identities", pairs.resampled_figures(multiplicities, thresholds=(threshold,)))]
        if index < n_pair_sets:
            # Pairs drawn with replacement (100 resamples are plenty to show how narrow their intervals are).
            drawn = rng.integers(0, len(pairs), size=(100, len(pairs))) + len(pairs) * np.arange(100)[:, None]
            weights = np.bincount(drawn.ravel(), minlength=100 * len(pairs)).reshape(100, len(pairs))
            methods.append(("pairs", pair_weighted_figures(scores, genuine, weights, thresholds=(threshold,))))
        for method, figures in methods:
            for name, values in (("auc", figures.auc), ("fnmr", figures.fnmr[:, 0]), ("fmr", figures.fmr[:, 0])):
                interval = percentile_interval(values)
                covered[method][name] += interval.low <= truth[name] <= interval.high
    coverage = {
        "identities": {name: count / n_sets for name, count in covered["identities"].items()},
        "pairs": {name: count / n_pair_sets for name, count in covered["pairs"].items()},
    }
    assert all(0.90 <= value <= 0.99 for value in coverage["identities"].values()), coverage
    # Impostor pairs share identities most: each identity is in 2 x 118 of them.
    assert coverage["pairs"]["fmr"] < 0.5, coverage
