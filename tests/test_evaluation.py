"""Scoring several models on the same pairs; the group analysis and the plain scoring agree to the last pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import faceval.models.scoring
from faceval.compute.local import prefetched
from faceval.evaluation import evaluate_embeddings, score_pairs
from faceval.models.embedders import EmbeddingResult
from faceval.models.extraction import EmbeddingSet
from faceval.models.scoring import Similarity, all_pair_scores, identity_codes, iter_pair_chunks
from faceval.output.group_presentation import group_report_dict
from faceval.output.results import Result
from faceval.sources.datasets import Dataset, ImageRecord
from faceval.stats.bootstrap import identity_strata
from faceval.stats.comparison import compare_models
from faceval.stats.groups import GroupOptions, group_failures, group_report


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


def test_one_pass_scores_each_pair_once_for_every_model_and_compares_them_on_the_held_scores(monkeypatch, tmp_path):
    dataset, first = population(failed={0, 5}, seed=1)
    _, second = population(failed={5, 9}, seed=2)
    _, third = population(failed=set(), seed=3)
    models = [first, second, third]
    labels = np.array(["A" if int(record.identity[2:]) < 5 else "B" for record in dataset.records], dtype=object)
    options = {embeddings.model: GroupOptions(n_resamples=60, seed=4) for embeddings in models}
    scored = []

    def counted(a, a_sq, b, b_sq, similarity, xp=np):
        scored.append(a.shape[0] * b.shape[0])
        return real(a, a_sq, b, b_sq, similarity, xp)

    def second_pass(*args, **kwargs):
        raise AssertionError("the pairs were scored a second time")

    real = faceval.models.scoring.block_scores
    with monkeypatch.context() as patch:
        patch.setattr(faceval.models.scoring, "block_scores", counted)
        patch.setattr(faceval.models.scoring, "all_pair_scores", second_pass)
        evaluation = evaluate_embeddings(
            dataset, models, groups=labels, group_options=options, save_scores=tmp_path, progress=False
        )
    common = np.array([k for k in range(40) if k not in {0, 5, 9}])
    identities = identity_codes([dataset.records[k].identity for k in common])
    # 37 images: one tile of 37 x 36 scores per model, each scored once, for the figures, intervals,
    # comparisons and saved scores together.
    assert scored == [37 * 36] * len(models)
    # Oracle: each model's scores of all pairs, compared by compare_models with identities resampled in groups.
    pairs = {
        embeddings.model: all_pair_scores(embeddings.vectors(common), identities, "cosine") for embeddings in models
    }
    first_id, second_id = identities[pairs["m1"].first], identities[pairs["m1"].second]
    strata = identity_strata(identities, identity_codes(labels[common]))
    expected = [
        compare_models(
            pairs[a].scores, pairs[b].scores, pairs[a].genuine, first_id, second_id, 60, 4, strata, names=(a, b)
        ).to_dict()
        for a, b in (("m1", "m2"), ("m1", "m3"), ("m2", "m3"))
    ]
    assert [comparison.to_dict() for comparison in evaluation.comparisons] == expected
    for embeddings in models:
        # The group figures and bootstrap intervals are those of a pass of this model alone.
        alone = group_report(
            iter_pair_chunks(embeddings.vectors(common), identities, "cosine"),
            labels[common],
            identities,
            "cosine",
            options[embeddings.model],
            failures=group_failures(labels, embeddings.embedded),
        )
        assert group_report_dict(evaluation.groups[embeddings.model]) == group_report_dict(alone)
        written = pq.read_table(tmp_path / embeddings.model / "scores.parquet")
        np.testing.assert_array_equal(written["score"].to_numpy(), pairs[embeddings.model].scores)


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
