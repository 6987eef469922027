"""The lattice state: exact counts at every lattice threshold, every figure within its stated bound of the exact one."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from faceval.models.scoring import Similarity, iter_pair_chunks
from faceval.stats.lattice import EXACT_MAX_PAIRS, Lattice, LatticeCounts, LatticeTable, resolution, score_counts
from faceval.stats.metrics import (
    ScoreCounts,
    ScoreTable,
    best_f1,
    equal_error_rate,
    roc_auc,
    sweep_at,
    tar_at_far,
    threshold_sweep,
)


def _synthetic_pairs(similarity: Similarity, n_identities: int = 60, per_identity: int = 10, seed: int = 0):
    """All pairs of synthetic embeddings (hard: AUC near 0.95), scored by faceval."""
    rng = np.random.default_rng(seed)
    identities = np.repeat(np.arange(n_identities), per_identity)
    vectors = rng.normal(size=(n_identities, 32))[identities] + rng.normal(scale=1.3, size=(identities.size, 32))
    chunks = list(iter_pair_chunks(vectors, identities, similarity))
    return np.concatenate([c.scores for c in chunks]), np.concatenate([c.genuine for c in chunks])


def _both(similarity: Similarity, lattice: Lattice | None = None, seed: int = 0) -> tuple[ScoreTable, LatticeTable]:
    scores, genuine = _synthetic_pairs(similarity, seed=seed)
    counts = LatticeCounts(lattice or Lattice.for_similarity(similarity))
    # In uneven chunks, so that chunking cannot matter.
    for part in np.array_split(np.arange(scores.size), 7):
        counts.update(scores[part], genuine[part])
    return ScoreTable.from_scores(scores, genuine), counts.compute()


@pytest.mark.parametrize("similarity", list(Similarity))
def test_counts_are_exact_at_every_lattice_threshold(similarity):
    exact, lattice = _both(similarity)
    at = sweep_at(exact, lattice.thresholds)
    np.testing.assert_array_equal(at.tp, lattice.genuine_accepted)
    np.testing.assert_array_equal(at.fp, lattice.impostor_accepted)
    assert (lattice.n_genuine, lattice.n_impostor) == (exact.n_genuine, exact.n_impostor)


def test_absolute_cells_respect_edges_exactly():
    lattice = Lattice.absolute(bits=21)
    cells = np.array([0, 1, 12345, 2**21, 2**22 - 1])
    edges = lattice.edges(cells)
    below = np.nextafter(edges[1:], -np.inf)
    np.testing.assert_array_equal(lattice.cells(edges), cells)
    np.testing.assert_array_equal(lattice.cells(below), cells[1:] - 1)
    assert lattice.cells(np.array([1.0])).tolist() == [2**22]
    with pytest.raises(ValueError, match="must lie in"):
        lattice.cells(np.array([1.5]))


def test_relative_cells_respect_edges_and_floor():
    lattice = Lattice.relative(bits=20)
    distances = np.array([0.0, 1e-12, 0.3, 0.5, 1.0, 1.5, 3.7])
    cells = lattice.cells(-distances)
    thresholds = lattice.thresholds(cells)
    # Each distance is accepted at its own cell's threshold, not at the next stricter cell's.
    assert np.all(-distances >= thresholds)
    assert np.all(-distances[2:] < lattice.thresholds(cells[2:] - 1))
    # Cells are 2^-20 of the distance wide, and the two smallest distances share the floor cell.
    widths = lattice.thresholds(cells - 1) - thresholds
    assert np.all(widths[2:] <= 2.0**-20 * distances[2:] * 1.0000001)
    assert cells[0] == cells[1]
    with pytest.raises(ValueError, match="negated distances"):
        lattice.cells(np.array([0.1]))


@pytest.mark.parametrize("similarity", list(Similarity))
def test_auc_within_its_bracket_and_bracket_below_1e6(similarity):
    scores, genuine = _synthetic_pairs(similarity)
    counts = LatticeCounts(Lattice.for_similarity(similarity))
    counts.update(scores, genuine)
    table = counts.compute()
    exact = roc_auc_score(genuine, scores)
    assert 0.9 < exact < 0.99
    assert abs(roc_auc(table) - exact) <= table.auc_bracket + 1e-15
    assert 0 < table.auc_bracket < 1e-6


def test_coarse_lattice_bracket_is_tight_enough_to_fail():
    # A coarse lattice shows that the bracket is a real bound, not a formality: the error is visible within it.
    exact, coarse = _both(Similarity.COSINE, Lattice.absolute(bits=6))
    error = abs(roc_auc(coarse) - roc_auc(exact))
    assert 1e-6 < error <= coarse.auc_bracket


@pytest.mark.parametrize("similarity", list(Similarity))
@pytest.mark.parametrize("far", [1e-1, 1e-2, 1e-3, 1e-4])
def test_tar_at_far_is_the_exact_rate_at_a_lattice_threshold_within_one_cell(similarity, far):
    exact, lattice = _both(similarity)
    on_lattice, reference = tar_at_far(lattice, far), tar_at_far(exact, far)
    assert on_lattice.threshold in set(lattice.thresholds.tolist())
    point = sweep_at(exact, [on_lattice.threshold])
    assert on_lattice.fmr == point.fmr[0] <= far
    assert on_lattice.tar == point.recall[0] <= reference.tar
    # The exact threshold lies in the lattice threshold's cell, or between it and the next occupied cell below.
    width = 2.0**-21 if similarity is Similarity.COSINE else 2.0**-20 * abs(on_lattice.threshold) * 1.000001
    assert reference.threshold < on_lattice.threshold + width
    next_below = lattice.thresholds[lattice.thresholds < on_lattice.threshold][:1]
    if next_below.size:
        assert reference.threshold > next_below[0]


@pytest.mark.parametrize("similarity", list(Similarity))
def test_eer_and_best_f1_within_their_bounds(similarity):
    exact, lattice = _both(similarity)
    coarse, fine = equal_error_rate(lattice), equal_error_rate(exact)
    # The exact crossing lies between the lattice neighbours: its value within their rates.
    low = min(coarse.fmr_above, coarse.fnmr_below)
    high = max(coarse.fmr_below, coarse.fnmr_above)
    assert low <= fine.value <= high
    assert high - low < 1e-3
    # The best F1 over lattice thresholds is an exact F1 at a real threshold, so never above the exact optimum.
    lattice_f1, exact_f1 = best_f1(threshold_sweep(lattice)), best_f1(threshold_sweep(exact))
    assert lattice_f1.f1 <= exact_f1.f1
    assert lattice_f1.f1 == pytest.approx(exact_f1.f1, abs=1e-3)


def test_merge_equals_one_state_and_memory_does_not_grow_with_pairs():
    rng = np.random.default_rng(1)
    states = [LatticeCounts(Lattice.absolute()) for _ in range(3)]
    everything = LatticeCounts(Lattice.absolute())
    sizes = []
    for state in states:
        scores = np.clip(rng.normal(scale=0.3, size=300_000), -1, 1)
        genuine = rng.random(scores.size) < 0.01
        state.update(scores, genuine)
        everything.update(scores, genuine)
    for state in states[1:]:
        states[0].merge(state)
        sizes.append(states[0].nbytes)
    merged, whole = states[0].compute(), everything.compute()
    np.testing.assert_array_equal(merged.thresholds, whole.thresholds)
    np.testing.assert_array_equal(merged.genuine, whole.genuine)
    np.testing.assert_array_equal(merged.impostor, whole.impostor)
    # The whole range of cosine scores needs at most 64 blocks of 1 MB, however many pairs.
    assert sizes[0] == sizes[1] <= 64 * 2**20 + 2**20
    with pytest.raises(TypeError):
        states[0].merge(LatticeCounts(Lattice.relative()))


def test_state_chosen_by_size_and_resolution_reported():
    assert isinstance(score_counts(Similarity.COSINE, EXACT_MAX_PAIRS), ScoreCounts)
    assert isinstance(score_counts(Similarity.COSINE, EXACT_MAX_PAIRS + 1), LatticeCounts)
    assert isinstance(score_counts(Similarity.EUCLIDEAN, 10, exact=False), LatticeCounts)
    exact, lattice = _both(Similarity.EUCLIDEAN)
    assert resolution(exact)["kind"] == "exact"
    described = resolution(lattice)
    assert described["kind"] == "relative lattice" and described["relative_cell_width"] == 2.0**-20
    assert described["auc_bracket"] == lattice.auc_bracket
