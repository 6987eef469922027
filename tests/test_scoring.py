"""Pair scores against explicit per-pair loops; chunking gives every pair once, in order, with the same score."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from faceval.models import scoring
from faceval.models.scoring import (
    PairChunk,
    Similarity,
    all_pair_scores,
    identity_codes,
    iter_pair_chunks,
    pair_scores_block,
)


def brute_force(a: np.ndarray, b: np.ndarray, similarity: Similarity) -> np.ndarray:
    out = np.empty((len(a), len(b)))
    for i, j in itertools.product(range(len(a)), range(len(b))):
        if similarity is Similarity.EUCLIDEAN:
            out[i, j] = -np.linalg.norm(a[i] - b[j])
        else:
            out[i, j] = np.dot(a[i], b[j]) / (np.linalg.norm(a[i]) * np.linalg.norm(b[j]))
    return out


def concatenated(chunks: list[PairChunk]) -> tuple[np.ndarray, ...]:
    return tuple(np.concatenate([getattr(c, name) for c in chunks]) for name in PairChunk.__dataclass_fields__)


# --- Similarity ------------------------------------------------------------------------------------------


def test_similarity_units_and_round_trips() -> None:
    assert Similarity("euclidean") is Similarity.EUCLIDEAN and isinstance(Similarity.COSINE, str)
    assert Similarity.EUCLIDEAN.model_units == "distance"
    assert Similarity.COSINE.model_units == "cosine similarity"
    assert Similarity.EUCLIDEAN.larger_is_more_similar_in_model_units is False
    assert Similarity.COSINE.larger_is_more_similar_in_model_units is True
    assert Similarity.EUCLIDEAN.to_model_units(-0.6) == 0.6
    assert Similarity.EUCLIDEAN.from_model_units(0.6) == -0.6
    assert Similarity.COSINE.to_model_units(0.35) == 0.35
    values = np.array([-1.5, -0.6, 0.0, 0.42])
    for similarity in Similarity:
        np.testing.assert_array_equal(similarity.from_model_units(similarity.to_model_units(values)), values)
        for value in values:
            assert similarity.to_model_units(similarity.from_model_units(float(value))) == value


def test_accepting_at_a_model_threshold_follows_the_model_convention() -> None:
    # dlib / face_recognition.compare_faces(tolerance=0.6): same person when distance <= 0.6.
    a = np.zeros((1, 2))
    b = np.array([[0.6, 0.0], [0.3, 0.4], [0.0, 0.7]])  # distances 0.6, 0.5, 0.7
    scores = pair_scores_block(a, b, Similarity.EUCLIDEAN)[0]
    np.testing.assert_array_equal(scores >= Similarity.EUCLIDEAN.from_model_units(0.6), [True, True, False])
    cosines = pair_scores_block(np.array([[1.0, 0.0]]), np.array([[1.0, 1.0], [0.0, 1.0]]), "cosine")[0]
    np.testing.assert_array_equal(cosines >= Similarity.COSINE.from_model_units(0.5), [True, False])


# --- pair_scores_block ---------------------------------------------------------------------------------


@pytest.mark.parametrize("similarity", list(Similarity))
@pytest.mark.parametrize(("rows_a", "rows_b", "dim"), [(1, 1, 3), (7, 11, 5), (13, 4, 128), (0, 3, 4)])
def test_block_scores_equal_per_pair_loops(similarity: Similarity, rows_a: int, rows_b: int, dim: int) -> None:
    rng = np.random.default_rng(rows_a * 100 + rows_b)
    a, b = rng.normal(size=(rows_a, dim)), rng.normal(size=(rows_b, dim)) * 3
    scores = pair_scores_block(a, b, similarity)
    assert scores.shape == (rows_a, rows_b) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, brute_force(a, b, similarity), rtol=0, atol=1e-10)


def test_duplicate_and_near_duplicate_vectors_keep_their_digits() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 128)) * 0.1 + 0.5
    b = a + rng.normal(size=(4, 128)) * np.array([0.0, 1e-9, 1e-6, 1e-3])[:, None]
    scores = np.diagonal(pair_scores_block(a, b, Similarity.EUCLIDEAN))
    assert scores[0] == 0.0
    # Relative, not absolute: |a|^2 + |b|^2 - 2ab alone would leave errors near 1e-8 here.
    np.testing.assert_allclose(scores, np.diagonal(brute_force(a, b, Similarity.EUCLIDEAN)), rtol=1e-12)


def test_cosine_of_a_vector_with_itself_never_exceeds_one() -> None:
    vectors = np.random.default_rng(3).normal(size=(200, 128))
    unit = vectors / np.linalg.norm(vectors, axis=1)[:, None]
    assert np.any(np.einsum("ij,ij->i", unit, unit) > 1.0), "rounding no longer pushes any cosine past 1 here"
    diagonal = np.diagonal(pair_scores_block(vectors, vectors, Similarity.COSINE))
    assert np.all(diagonal <= 1.0) and np.all(diagonal >= 1.0 - 1e-15)


def test_block_errors_name_the_problem() -> None:
    vectors = np.ones((3, 4))
    vectors[2] = 0.0
    with pytest.raises(ValueError, match="row 2 of b is a zero vector"):
        pair_scores_block(np.ones((1, 4)), vectors, Similarity.COSINE)
    assert pair_scores_block(np.ones((1, 4)), vectors, Similarity.EUCLIDEAN)[0, 2] == -2.0
    vectors[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"non-finite values .* row 1"):
        pair_scores_block(vectors, vectors, Similarity.EUCLIDEAN)
    with pytest.raises(ValueError, match="different lengths: 4 and 5"):
        pair_scores_block(np.ones((1, 4)), np.ones((1, 5)), Similarity.EUCLIDEAN)
    with pytest.raises(ValueError, match="2-D"):
        pair_scores_block(np.ones(4), np.ones((1, 4)), Similarity.EUCLIDEAN)
    with pytest.raises(ValueError, match="not a valid Similarity"):
        pair_scores_block(np.ones((1, 4)), np.ones((1, 4)), "manhattan")


# --- iter_pair_chunks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("similarity", list(Similarity))
@pytest.mark.parametrize("n", [2, 3, 7, 31])
@pytest.mark.parametrize("tile_elements", [1, 7, 1 << 20])
def test_chunks_give_every_pair_once_in_order(similarity: Similarity, n: int, tile_elements: int, monkeypatch) -> None:
    # Small tiles make chunks span several tiles; chunk sizes below, at and above a row length, and primes.
    monkeypatch.setattr(scoring, "_TILE_ELEMENTS", tile_elements)
    rng = np.random.default_rng(n)
    vectors = rng.normal(size=(n, 6))
    identities = rng.integers(0, 3, size=n)
    total = n * (n - 1) // 2
    expected_first, expected_second = np.triu_indices(n, k=1)
    expected_scores = brute_force(vectors, vectors, similarity)[expected_first, expected_second]
    reference = None
    for chunk_size in sorted({1, 2, 3, 5, 7, 13, 29, n - 1, n, total, total + 1, 2_000_000}):
        chunks = list(iter_pair_chunks(vectors, identities, similarity, max_pairs_per_chunk=chunk_size))
        assert [len(c) for c in chunks[:-1]] == [chunk_size] * (len(chunks) - 1)
        assert 1 <= len(chunks[-1]) <= chunk_size
        first, second, scores, genuine = concatenated(chunks)
        assert first.dtype == second.dtype == np.int64 and genuine.dtype == bool
        np.testing.assert_array_equal(first, expected_first)
        np.testing.assert_array_equal(second, expected_second)
        np.testing.assert_array_equal(genuine, identities[expected_first] == identities[expected_second])
        np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=1e-10)
        # A pair's score does not depend on the chunk size, to the last bit.
        reference = scores if reference is None else reference
        np.testing.assert_array_equal(scores, reference)


def test_genuine_flags_follow_identity_codes() -> None:
    labels = ["新垣結衣", "bob", "新垣結衣", "amy", "bob"]
    codes = identity_codes(labels)
    assert codes.dtype == np.int64
    pairs = all_pair_scores(np.arange(10.0).reshape(5, 2) + 1, codes, Similarity.COSINE)
    genuine_pairs = {(int(i), int(j)) for i, j, g in zip(pairs.first, pairs.second, pairs.genuine, strict=True) if g}
    assert genuine_pairs == {(0, 2), (1, 4)}


def test_identity_codes() -> None:
    codes = identity_codes(["b", "a", "b", "c"])
    np.testing.assert_array_equal(codes, [1, 0, 1, 2])
    assert identity_codes([]).shape == (0,)


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_vectors_have_no_pairs(n: int) -> None:
    assert list(iter_pair_chunks(np.ones((n, 3)), np.zeros(n, dtype=int), Similarity.EUCLIDEAN)) == []
    pairs = all_pair_scores(np.ones((n, 3)), np.zeros(n, dtype=int), Similarity.EUCLIDEAN)
    assert len(pairs) == 0 and pairs.first.dtype == np.int64 and pairs.genuine.dtype == bool


def test_all_pair_scores_concatenates_the_chunks() -> None:
    rng = np.random.default_rng(5)
    vectors, identities = rng.normal(size=(20, 4)), rng.integers(0, 4, 20)
    pairs = all_pair_scores(vectors, identities, Similarity.EUCLIDEAN)
    chunks = concatenated(list(iter_pair_chunks(vectors, identities, Similarity.EUCLIDEAN, 17)))
    for actual, expected in zip((pairs.first, pairs.second, pairs.scores, pairs.genuine), chunks, strict=True):
        np.testing.assert_array_equal(actual, expected)


def test_iter_pair_chunks_rejects_bad_arguments_at_the_call() -> None:
    vectors = np.ones((3, 2))
    with pytest.raises(ValueError, match="one code per vector"):
        iter_pair_chunks(vectors, np.zeros(2, dtype=int), Similarity.EUCLIDEAN)
    with pytest.raises(ValueError, match="integer codes"):
        iter_pair_chunks(vectors, np.zeros(3), Similarity.EUCLIDEAN)
    with pytest.raises(ValueError, match="at least 1"):
        iter_pair_chunks(vectors, np.zeros(3, dtype=int), Similarity.EUCLIDEAN, max_pairs_per_chunk=0)
    vectors[1] = 0.0
    with pytest.raises(ValueError, match="row 1 of vectors is a zero vector"):
        iter_pair_chunks(vectors, np.zeros(3, dtype=int), Similarity.COSINE)
