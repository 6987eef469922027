"""The GPU engine's code on the CPU (numpy as its array module), and on a GPU where CuPy sees one.

Oracles: the scale engine's one-process run (`iter_pair_chunks` into `ScoreCounts`, `LatticeCounts`, `group_report`
with its per-identity statistics), and brute-force counts ``(scores >= t).sum()`` at every lattice threshold.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from faceval.compute.gpu import (
    SCORE_TOLERANCE,
    DevicePairs,
    cupy_or_none,
    dlib_cuda_note,
    scoring_array_module,
)
from faceval.evaluation import evaluate_embeddings, score_pairs
from faceval.models.embedders import EmbeddingResult
from faceval.models.extraction import EmbeddingSet
from faceval.models.onnx_embedder import onnx_providers
from faceval.models.scoring import Similarity, all_pair_scores, iter_pair_chunks
from faceval.output.group_presentation import group_report_dict
from faceval.output.results import Result
from faceval.sources.datasets import Dataset, ImageRecord
from faceval.stats.accumulators import ModelFeed, update_counts
from faceval.stats.groups import GroupOptions, group_report
from faceval.stats.lattice import Lattice, LatticeCounts
from faceval.stats.metrics import ScoreCounts


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
    feed = DevicePairs([(vectors, similarity)], identities, np)
    assert_same_table(
        feed.accumulate(ScoreCounts, ModelFeed(update_counts)).compute(), score_pairs(vectors, identities, similarity)
    )


@pytest.mark.parametrize("similarity", list(Similarity))
def test_card_sized_tiles_change_scores_only_within_the_tolerance(similarity):
    vectors, identities = synthetic()
    expected = all_pair_scores(vectors, identities, similarity)
    # About 3 rows per tile: other matrix shapes, as on a card, round a few scores differently.
    feed = DevicePairs([(vectors, similarity)], identities, np, max_bytes=64 * 3 * len(vectors))
    assert feed.rows_per_tile == 3
    pairs = feed.accumulate(list, ModelFeed(list.append))
    scores = np.concatenate([chunk.scores for chunk in pairs])
    assert np.array_equal(np.concatenate([chunk.first for chunk in pairs]), expected.first)
    assert np.array_equal(np.concatenate([chunk.second for chunk in pairs]), expected.second)
    assert np.array_equal(np.concatenate([chunk.genuine for chunk in pairs]), expected.genuine)
    assert np.abs(scores - expected.scores).max() <= SCORE_TOLERANCE


@pytest.mark.parametrize("similarity", list(Similarity))
def test_device_lattice_counts_are_the_scale_engines_bit_for_bit(similarity):
    # Lattice counts are placed and counted where the scores are (the path a GPU takes), with lattice.py's cells.
    vectors, identities = synthetic()
    new = functools.partial(LatticeCounts, Lattice.for_similarity(similarity))
    counts = DevicePairs([(vectors, similarity)], identities, np).accumulate(new, ModelFeed(update_counts))
    table = counts.compute()
    assert_same_table(table, score_pairs(vectors, identities, similarity, exact=False))
    assert table.lattice == Lattice.for_similarity(similarity)
    # Oracle: the pairs accepted at each lattice threshold, counted directly.
    pairs = all_pair_scores(vectors, identities, similarity)
    for threshold, genuine, impostor in zip(
        table.thresholds, table.genuine_accepted, table.impostor_accepted, strict=True
    ):
        accepted = pairs.scores >= threshold
        assert genuine == (accepted & pairs.genuine).sum() and impostor == (accepted & ~pairs.genuine).sum()


def assert_same_report(actual, expected) -> None:
    assert json.dumps(group_report_dict(actual), sort_keys=True) == json.dumps(
        group_report_dict(expected), sort_keys=True
    )
    assert sorted(actual.influences) == sorted(expected.influences)
    for name, influences in expected.influences.items():
        for figure in ("auc", "eer", "tar", "fmr", "fnmr"):
            assert np.array_equal(getattr(actual.influences[name], figure), getattr(influences, figure)), figure


@pytest.mark.parametrize("intervals", ["bootstrap", "streaming"])
def test_group_report_from_the_device_feed_equals_the_cpu_one(intervals):
    vectors, identities = synthetic(40, 4)
    labels = np.where(identities % 2 == 0, "even", "odd")
    # Streaming intervals on a lattice: the scale engine's states (lattice counts, per-identity statistics).
    options = GroupOptions(
        target_fmr=0.01, n_resamples=20, intervals=intervals, exact=None if intervals == "bootstrap" else False
    )
    local = group_report(iter_pair_chunks(vectors, identities, "cosine"), labels, identities, "cosine", options)
    device = group_report(DevicePairs([(vectors, "cosine")], identities, np), labels, identities, "cosine", options)
    assert_same_report(device, local)
    assert bool(local.influences) == (intervals == "streaming")


def test_streaming_intervals_from_the_device_feed_count_into_the_bins_of_the_sample(monkeypatch):
    # Over SAMPLE_IMPOSTORS pairs in every state: the bins come from a seeded sample of the pairs, scored on the
    # client before the pass; the device feed's tiles are cut elsewhere than the one-process chunks, yet count into
    # the same bins.
    monkeypatch.setattr("faceval.stats.groups.SAMPLE_IMPOSTORS", 1 << 14)
    vectors, identities = synthetic(60, 5)
    labels = np.where(identities % 2 == 0, "even", "odd")
    options = GroupOptions(target_fmr=0.01, n_resamples=20, intervals="streaming", exact=False)
    chunks = iter_pair_chunks(vectors, identities, "cosine", max_pairs_per_chunk=5_000)
    local = group_report(chunks, labels, identities, "cosine", options, vectors=vectors)
    feed = DevicePairs([(vectors, "cosine")], identities, np, max_bytes=64 * 40 * len(vectors))
    assert feed.rows_per_tile == 40
    assert_same_report(group_report(feed, labels, identities, "cosine", options, vectors=vectors), local)


def two_models(n_identities: int = 40, per_identity: int = 4) -> tuple[Dataset, list[EmbeddingSet], np.ndarray]:
    """A dataset of synthetic images with two models' embeddings of them, and a group per image."""
    vectors, identities = synthetic(n_identities, per_identity)
    records = tuple(ImageRecord(Path(f"{k}.png"), f"id{identity}") for k, identity in enumerate(identities))
    noisy = vectors + np.random.default_rng(5).normal(scale=1.5, size=vectors.shape)
    sets = [
        EmbeddingSet(name, similarity, {}, tuple(EmbeddingResult(vector) for vector in model_vectors))
        for name, model_vectors, similarity in (
            ("sharp", vectors, Similarity.COSINE),
            ("noisy", noisy, Similarity.EUCLIDEAN),
        )
    ]
    return Dataset(Path("."), "folders", records), sets, np.where(identities % 2 == 0, "even", "odd").astype(object)


@pytest.mark.parametrize("intervals", ["bootstrap", "streaming"])
def test_a_two_model_pass_on_the_device_feed_gives_the_local_evaluation(intervals):
    dataset, sets, labels = two_models()
    options = {
        embeddings.model: GroupOptions(target_fmr=0.01, n_resamples=20, intervals=intervals, exact=False)
        for embeddings in sets
    }

    def on_device(models, identities, progress=False, label=""):
        return DevicePairs(models, identities, np, progress, label)

    local = evaluate_embeddings(dataset, sets, groups=labels, group_options=options)
    device = evaluate_embeddings(dataset, sets, groups=labels, group_options=options, pair_feed=on_device)
    # The documents are made at two instants: all but their creation time must agree.
    assert {**Result(device).to_dict(), "created": None} == {**Result(local).to_dict(), "created": None}
    assert len(local.comparisons) == 1 and local.comparisons[0].interval is not None


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
    pairs = DevicePairs([(vectors, similarity)], identities, cupy).accumulate(list, ModelFeed(list.append))
    # A list is a host state: the chunks come back as numpy arrays.
    scores = np.concatenate([chunk.scores for chunk in pairs])
    assert np.abs(scores - expected.scores).max() <= SCORE_TOLERANCE
    # Device counts on the lattice: identical except pairs whose CPU score is within the tolerance of a cell edge.
    lattice = Lattice.for_similarity(similarity)
    on_gpu = DevicePairs([(vectors, similarity)], identities, cupy).accumulate(
        functools.partial(LatticeCounts, lattice), ModelFeed(update_counts)
    )
    on_cpu = LatticeCounts(lattice)
    on_cpu.update(expected.scores, expected.genuine)
    low, high = (-1.0, 1.0) if similarity is Similarity.COSINE else (-np.inf, 0.0)
    near_edge = lattice.cells(np.clip(expected.scores - SCORE_TOLERANCE, low, high)) != lattice.cells(
        np.clip(expected.scores + SCORE_TOLERANCE, low, high)
    )
    cells = np.union1d(on_gpu.cell_counts()[0], on_cpu.cell_counts()[0])
    dense = []
    for state in (on_gpu, on_cpu):
        occupied, genuine, impostor = state.cell_counts()
        counts = np.zeros((cells.size, 2), dtype=np.int64)
        counts[np.searchsorted(cells, occupied)] = np.column_stack((genuine, impostor))
        dense.append(counts)
    assert np.abs(dense[0] - dense[1]).sum() <= 2 * near_edge.sum()
