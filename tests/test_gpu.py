"""The GPU engine's code on the CPU (numpy as its array module), and on a GPU where CuPy sees one.

Oracles: `iter_pair_chunks` + `ScoreCounts` (the CPU path), brute-force counts ``(scores >= t).sum()`` at every
lattice threshold, and `numpy.searchsorted` for the lattice cells.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from faceval.accumulators import update_counts
from faceval.evaluation import score_pairs
from faceval.gpu import (
    SCORE_TOLERANCE,
    DenseLatticeCounts,
    DevicePairs,
    cupy_or_none,
    dlib_cuda_note,
    onnx_providers,
    scoring_array_module,
)
from faceval.groups import GroupOptions, group_report
from faceval.metrics import ScoreCounts
from faceval.scoring import Similarity, all_pair_scores, iter_pair_chunks


def synthetic(n_identities: int = 90, per_identity: int = 5, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    identities = np.repeat(np.arange(n_identities), per_identity)
    vectors = rng.normal(size=(n_identities, 16))[identities] + rng.normal(scale=0.9, size=(identities.size, 16))
    vectors[7] = vectors[3]  # identical vectors: a Euclidean score of exactly 0
    return vectors, identities


def assert_same_table(actual, expected) -> None:
    assert np.array_equal(actual.thresholds, expected.thresholds)
    assert np.array_equal(actual.genuine, expected.genuine)
    assert np.array_equal(actual.impostor, expected.impostor)


@pytest.mark.parametrize("similarity", list(Similarity))
def test_device_code_on_the_cpu_gives_the_cpu_counts_bit_for_bit(similarity):
    vectors, identities = synthetic()
    feed = DevicePairs(vectors, identities, similarity, np)
    assert_same_table(
        feed.accumulate(ScoreCounts, update_counts).compute(), score_pairs(vectors, identities, similarity)
    )


@pytest.mark.parametrize("similarity", list(Similarity))
def test_card_sized_tiles_change_scores_only_within_the_tolerance(similarity):
    vectors, identities = synthetic()
    expected = all_pair_scores(vectors, identities, similarity)
    # About 3 rows per tile: other matrix shapes, as on a card, round a few scores differently.
    feed = DevicePairs(vectors, identities, similarity, np, max_bytes=64 * 3 * len(vectors))
    assert feed.rows_per_tile == 3
    pairs = feed.accumulate(list, list.append)
    scores = np.concatenate([chunk.scores for chunk in pairs])
    assert np.array_equal(np.concatenate([chunk.first for chunk in pairs]), expected.first)
    assert np.array_equal(np.concatenate([chunk.second for chunk in pairs]), expected.second)
    assert np.array_equal(np.concatenate([chunk.genuine for chunk in pairs]), expected.genuine)
    assert np.abs(scores - expected.scores).max() <= SCORE_TOLERANCE


def test_lattice_counts_are_exact_at_every_lattice_threshold():
    vectors, identities = synthetic()
    pairs = all_pair_scores(vectors, identities, "euclidean")
    counts = DenseLatticeCounts(-20.0, 0.0, resolution=0.01)
    for chunk in iter_pair_chunks(vectors, identities, "euclidean", max_pairs_per_chunk=7_777):
        counts.update(chunk.scores, chunk.genuine)
    table = counts.compute()
    edges = -20.0 + np.arange(counts.n_cells) * 0.01
    # Oracle 1: each pair's cell by binary search over the edges.
    cells = np.searchsorted(edges, pairs.scores, side="right") - 1
    expected = np.bincount(cells + counts.n_cells * pairs.genuine, minlength=2 * counts.n_cells)
    assert np.array_equal(counts.host_counts(), expected)
    # Oracle 2: pairs accepted at each threshold of the table, counted directly.
    for threshold, genuine, impostor in zip(
        table.thresholds, table.genuine_accepted, table.impostor_accepted, strict=True
    ):
        accepted = pairs.scores >= threshold
        assert genuine == (accepted & pairs.genuine).sum() and impostor == (accepted & ~pairs.genuine).sum()


def test_lattice_counts_merge_and_refuse_what_they_cannot_hold():
    whole = DenseLatticeCounts(-1.0, 1.0, 0.5)
    parts = [DenseLatticeCounts(-1.0, 1.0, 0.5) for _ in range(2)]
    scores, genuine = np.array([-1.0, 0.2, 0.5, 1.0]), np.array([False, True, True, False])
    whole.update(scores, genuine)
    parts[0].update(scores[:2], genuine[:2])
    parts[1].update(scores[2:], genuine[2:])
    parts[0].merge(parts[1])
    assert np.array_equal(parts[0].host_counts(), whole.host_counts())
    with pytest.raises(ValueError, match="outside the lattice"):
        whole.update(np.array([1.5]), np.array([True]))
    with pytest.raises(ValueError, match="different lattices"):
        whole.merge(DenseLatticeCounts(-1.0, 1.0, 0.25))


def test_group_report_from_the_device_feed_equals_the_cpu_one():
    vectors, identities = synthetic(40, 4)
    labels = np.where(identities % 2 == 0, "even", "odd")
    options = GroupOptions(target_fmr=0.01, n_resamples=20)
    local = group_report(iter_pair_chunks(vectors, identities, "cosine"), labels, identities, "cosine", options)
    device = group_report(DevicePairs(vectors, identities, "cosine", np), labels, identities, "cosine", options)
    assert device.to_dict() == local.to_dict()


def test_devices_that_are_not_there_say_how_to_get_them():
    assert scoring_array_module("cpu") is np
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="--device must be one of auto, cpu, cuda"):
        scoring_array_module("tpu")
    if cupy_or_none() is None:
        assert scoring_array_module("auto") is np
        with pytest.raises(ValueError, match=r"faceval\[gpu\]"):
            scoring_array_module("cuda")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert onnx_providers("auto") == ["CPUExecutionProvider"]
        with pytest.raises(ValueError, match=r"no CUDA execution provider.*onnxruntime-gpu"):
            onnx_providers("cuda")
    import dlib

    note = dlib_cuda_note("cuda")
    assert (note is None) == bool(getattr(dlib, "DLIB_USE_CUDA", False))
    assert note is None or "built without CUDA" in note
    assert dlib_cuda_note("cpu") is None


@pytest.mark.skipif(cupy_or_none() is None, reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("similarity", list(Similarity))
def test_on_the_gpu_scores_match_the_cpu_within_the_tolerance(similarity):
    cupy = cupy_or_none()
    vectors, identities = synthetic(400, 5)
    expected = all_pair_scores(vectors, identities, similarity)
    pairs = DevicePairs(vectors, identities, similarity, cupy).accumulate(list, list.append)
    # A list is a host state: the chunks come back as numpy arrays.
    scores = np.concatenate([chunk.scores for chunk in pairs])
    assert np.abs(scores - expected.scores).max() <= SCORE_TOLERANCE
    # Device counts on a lattice: identical except pairs whose CPU score is within the tolerance of an edge.
    low = -40.0 if similarity is Similarity.EUCLIDEAN else -1.0
    lattice = functools.partial(DenseLatticeCounts, low, 1.0, 1e-3)
    on_gpu = DevicePairs(vectors, identities, similarity, cupy).accumulate(
        functools.partial(lattice, xp=cupy), update_counts
    )
    on_cpu = lattice()
    on_cpu.update(expected.scores, expected.genuine)
    edges = low + np.arange(on_cpu.n_cells) * 1e-3
    above = np.clip(np.searchsorted(edges, expected.scores), 1, len(edges) - 1)
    gap = np.minimum(np.abs(expected.scores - edges[above]), np.abs(expected.scores - edges[above - 1]))
    near_edge = gap <= SCORE_TOLERANCE
    assert np.abs(on_gpu.host_counts() - on_cpu.host_counts()).sum() <= 2 * near_edge.sum()
