"""Scoring several models on the same pairs; the group analysis and the plain scoring agree to the last pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceval.datasets import Dataset, ImageRecord
from faceval.embedders import EmbeddingResult
from faceval.evaluation import evaluate_embeddings, prefetched, score_pairs
from faceval.extraction import EmbeddingSet
from faceval.groups import GroupOptions
from faceval.results import Result
from faceval.scoring import Similarity, identity_codes


def population(failed: set[int], seed: int, dim: int = 8) -> tuple[Dataset, EmbeddingSet]:
    rng = np.random.default_rng(seed)
    labels = [f"id{k // 4}" for k in range(40)]
    centres = {label: rng.normal(size=dim) for label in set(labels)}
    records = tuple(ImageRecord(Path(f"{k}.png"), label) for k, label in enumerate(labels))
    results = tuple(
        EmbeddingResult(None, failure="no face")
        if k in failed
        else EmbeddingResult(centres[label] + rng.normal(size=dim))
        for k, label in enumerate(labels)
    )
    return Dataset(Path("."), "folders", records), EmbeddingSet(f"m{seed}", Similarity.COSINE, {}, results)


def test_models_are_scored_on_the_images_every_model_embedded():
    dataset, first = population(failed={0, 5}, seed=1)
    _, second = population(failed={5, 9}, seed=2)
    evaluation = evaluate_embeddings(dataset, [first, second])
    common = np.array([k for k in range(40) if k not in {0, 5, 9}])
    identities = identity_codes([dataset.records[k].identity for k in common])
    for embeddings in (first, second):
        result = evaluation.models[embeddings.model]
        expected = score_pairs(embeddings.vectors(common), identities, Similarity.COSINE)
        assert result.n_images == 37 and result.n_failed == 2
        np.testing.assert_array_equal(result.table.thresholds, expected.thresholds)
        np.testing.assert_array_equal(result.table.genuine, expected.genuine)
        np.testing.assert_array_equal(result.table.impostor, expected.impostor)
    assert any("37 images that every model embedded" in note for note in evaluation.notes)


def test_failure_adjusted_rates_count_the_images_left_out_of_the_common_set():
    dataset, first = population(failed={0, 5}, seed=1)
    _, second = population(failed={5, 9}, seed=2)
    options = {name: GroupOptions(n_resamples=0) for name in ("m1", "m2")}
    document = Result(evaluate_embeddings(dataset, [first, second], group_options=options)).to_dict()
    for model in document["models"].values():
        # Each model failed on 2 of 40 images, but its rates are over the 37 images both models embedded.
        assert model["fte"] == 2 / 40 and model["fte_for_adjusted_rates"] == 3 / 40
        kept = (37 / 40) ** 2
        point = model["best_f1"]
        assert point["fnmr_with_failures"] == pytest.approx(1 - kept * (1 - point["fnmr"]), abs=1e-15)
        assert point["fmr_with_failures"] == pytest.approx(kept * point["fmr"], abs=1e-15)
        group = model["global_threshold"]["groups"]["all"]
        assert group["fmr_with_failures"] == pytest.approx(kept * group["fmr"], abs=1e-15)


def test_group_analysis_table_equals_plain_scoring():
    dataset, embeddings = population(failed={3}, seed=3)
    plain = evaluate_embeddings(dataset, [embeddings]).models[embeddings.model].table
    options = {embeddings.model: GroupOptions(n_resamples=50)}
    grouped = evaluate_embeddings(dataset, [embeddings], group_options=options)
    table = grouped.models[embeddings.model].table
    np.testing.assert_array_equal(table.thresholds, plain.thresholds)
    np.testing.assert_array_equal(table.genuine, plain.genuine)
    np.testing.assert_array_equal(table.impostor, plain.impostor)
    assert grouped.groups[embeddings.model].overall.table is table


def test_streaming_intervals_compare_models_and_count_on_the_lattice_end_to_end():
    dataset, first = population(failed=set(), seed=1, dim=4)
    _, second = population(failed=set(), seed=2, dim=4)
    results = {}
    for intervals in ("bootstrap", "streaming"):
        options = {name: GroupOptions(n_resamples=400, intervals=intervals, exact=False) for name in ("m1", "m2")}
        results[intervals] = Result(evaluate_embeddings(dataset, [first, second], group_options=options)).to_dict()
    exact, streaming = results["bootstrap"], results["streaming"]
    (paired,), (linearised,) = exact["comparisons"], streaming["comparisons"]
    assert linearised["bootstrap"].startswith("paired streaming identity influences")
    assert linearised["difference"] == pytest.approx(paired["difference"], abs=1e-12)
    width = paired["ci"][1] - paired["ci"][0]
    assert abs(linearised["ci"][0] - paired["ci"][0]) < 0.5 * width
    assert abs(linearised["ci"][1] - paired["ci"][1]) < 0.5 * width
    for name in ("m1", "m2"):
        model = streaming["models"][name]
        assert model["resolution"]["kind"] == "absolute lattice" and model["bootstrap"]["intervals"] == "streaming"
        low, high = model["all_pairs"]["auc_ci"]
        assert low < model["auc"] < high


def test_prefetched_chunks_keep_order_pass_errors_and_stop_early():
    assert list(prefetched(iter(range(100)), depth=3)) == list(range(100))

    def failing():
        yield 1
        raise ValueError("bad chunk")

    with pytest.raises(ValueError, match="bad chunk"):
        list(prefetched(failing()))
    produced = []

    def endless():
        for item in range(10**9):
            produced.append(item)
            yield item

    stream = prefetched(endless(), depth=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # the producer stops instead of running on
    assert len(produced) <= 3 + 2 + 1
