"""1:N identification against brute force: the search, every figure, per group intervals, gallery-size curve."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceval.models.scoring import Similarity, identity_codes
from faceval.stats import search
from faceval.stats.bootstrap import identity_multiplicities, identity_strata, percentile_interval
from faceval.stats.identification import identify_figures
from faceval.stats.search import build_gallery

from identification_oracle import Oracle


def tied_data(seed, metric="euclidean"):
    """Euclidean: small integer vectors (exact scores, so ties are exact), gallery rows copied under other
    identities and probes equal to gallery rows: mates tie with non-mates. Cosine: continuous vectors, no ties
    (a cosine is rounded, so a tie in exact arithmetic may not be one in floating point)."""
    rng = np.random.default_rng(seed)
    n_gallery_ids, dim = int(rng.integers(3, 12)), 3
    gallery_identities = [f"g{k}" for k in range(n_gallery_ids) for _ in range(int(rng.integers(1, 4)))]
    gallery = rng.integers(-2, 3, (len(gallery_identities), dim)).astype(float)
    copies = rng.integers(0, len(gallery), len(gallery) // 3)
    gallery[rng.integers(0, len(gallery), copies.size)] = gallery[copies]
    n_probes = int(rng.integers(8, 30))
    probe_identities = [f"g{k}" for k in rng.integers(0, n_gallery_ids + 4, n_probes)]  # g >= n: non-mated
    probes = rng.integers(-2, 3, (n_probes, dim)).astype(float)
    same = rng.random(n_probes) < 0.4
    probes[same] = gallery[rng.integers(0, len(gallery), int(same.sum()))]
    if metric == "cosine":
        gallery = rng.normal(size=gallery.shape)
        probes = rng.normal(size=probes.shape)
    return probes, probe_identities, gallery, gallery_identities


def run_search(probes, probe_identities, gallery, gallery_identities, metric, fusion, max_rank, seed=0):
    built = build_gallery(gallery, gallery_identities, Similarity(metric), fusion, seed=seed)
    position = built.index()
    mates = [position.get(identity, -1) for identity in probe_identities]
    result = search.search(probes, mates, built, Similarity(metric), max_rank=max_rank, n_candidates=4)
    return built, result


@pytest.mark.parametrize("fusion", ["max", "mean-embedding"])
@pytest.mark.parametrize("seed", range(12))
def test_search_equals_brute_force_with_ties(monkeypatch, fusion, seed):
    # Tiny tiles: many probe blocks and gallery blocks, so the running top-k and the bucket maxima are merged.
    rng = np.random.default_rng(100 + seed)
    monkeypatch.setattr(search, "_TILE_ELEMENTS", int(rng.integers(1, 40)))
    monkeypatch.setattr(search, "_PROBES_PER_TILE", int(rng.integers(1, 6)))
    metric = "euclidean" if seed % 3 else "cosine"
    probes, probe_identities, gallery, gallery_identities = tied_data(seed, metric)
    max_rank = int(rng.integers(1, 6))
    built, result = run_search(probes, probe_identities, gallery, gallery_identities, metric, fusion, max_rank, seed)
    oracle = Oracle(probes, probe_identities, gallery, gallery_identities, metric, fusion)
    assert sorted(built.names) == sorted(set(gallery_identities))
    for i in range(len(probes)):
        rank = oracle.rank(i)
        assert result.mate_rank[i] == (rank if rank <= max_rank else max_rank + 1)
        assert np.isclose(result.mate_score[i], oracle.mate_score(i), equal_nan=True)
        assert np.isclose(result.top_score[i], oracle.top(i))
        for size, best in zip(result.sizes, result.top_score_by_size[i], strict=True):
            assert np.isclose(best, oracle.top(i, set(built.names[:size])))
        # Candidates: the best identities in order, the mate after non-mates it ties with.
        listed = [(built.names[c], s) for c, s in zip(result.candidates[i], result.candidate_scores[i], strict=True)]
        expected = sorted(oracle.scores[i].values(), reverse=True)[: len(listed)]
        assert len(listed) == min(4, len(oracle.scores[i]))
        assert np.allclose([s for _, s in listed], expected)
        names = [name for name, _ in listed]
        if 0 < rank <= len(listed):
            assert names.index(probe_identities[i]) == rank - 1


def random_figure_data(seed):
    probes, probe_identities, gallery, gallery_identities = tied_data(seed)
    groups = np.array(["young" if int(name[1:]) % 2 else "old" for name in probe_identities], dtype=object)
    return probes, probe_identities, gallery, gallery_identities, groups


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("seed", range(8))
def test_every_figure_equals_brute_force(seed, rank):
    probes, probe_identities, gallery, gallery_identities, groups = random_figure_data(seed)
    oracle = Oracle(probes, probe_identities, gallery, gallery_identities, "euclidean")
    if all(oracle.mated) or not any(oracle.mated):
        pytest.skip("this draw has only one kind of search")
    built, result = run_search(probes, probe_identities, gallery, gallery_identities, "euclidean", "max", 5, seed)
    codes = identity_codes(probe_identities)
    figures = identify_figures(result, codes, groups, rank=rank, target_fpir=0.2, n_resamples=50, seed=seed)
    # CMC at every kept rank.
    for r in range(1, 6):
        assert figures.cmc[r - 1] == pytest.approx(oracle.cmc(r))
    # The trade-off at every distinct score, and FNIR at each target FPIR with its threshold.
    thresholds = oracle.candidate_thresholds(rank)
    assert figures.trade_off.thresholds.tolist() == pytest.approx([math.inf, *thresholds])
    for threshold, fpir, fnir in zip(thresholds, figures.trade_off.fpir[1:], figures.trade_off.fnir[1:], strict=True):
        assert fpir == pytest.approx(oracle.fpir(threshold)) and fnir == pytest.approx(oracle.fnir(threshold, rank))
    n_nonmated = sum(1 for mated in oracle.mated if not mated)
    for key, target in (("1e-1", 0.1), ("1e-2", 0.01), ("1e-3", 0.001)):
        fnir, fpir, threshold = oracle.fnir_at_fpir(target, rank)
        point = figures.fnir_at_fpir[key]
        assert (point.fnir, point.fpir, point.threshold) == pytest.approx((fnir, fpir, threshold))
        assert point.supported == (n_nonmated >= 3 / target)
    # Per group at the global threshold (FPIR 0.2), with the identity-bootstrap intervals re-done by loops.
    _, _, chosen = oracle.fnir_at_fpir(0.2, rank)
    assert figures.global_threshold == pytest.approx(chosen)
    multiplicities = identity_multiplicities(
        identity_strata(codes, np.searchsorted(["old", "young"], groups)), 50, seed
    )
    for name in ("old", "young", "all"):
        members = [name == "all" or group == name for group in groups]
        group = figures.groups[name]
        mated_here = [i for i in range(len(probes)) if members[i] and oracle.mated[i]]
        nonmated_here = [i for i in range(len(probes)) if members[i] and not oracle.mated[i]]
        assert (group.n_mated, group.n_nonmated) == (len(mated_here), len(nonmated_here))
        if mated_here:
            assert group.rank1 == pytest.approx(oracle.cmc(1, members))
            assert group.fnir == pytest.approx(oracle.fnir(chosen, rank, members))
        if nonmated_here:
            assert group.fpir == pytest.approx(oracle.fpir(chosen, members))
        # Each resample: every drawn copy of an identity brings all its searches.
        for figure, chosen_searches, hit in (
            ("rank1", mated_here, lambda i: oracle.rank(i) == 1),
            ("fnir", mated_here, lambda i: oracle.rank(i) > rank or oracle.mate_score(i) < chosen),
            ("fpir", nonmated_here, lambda i: oracle.top(i) >= chosen),
        ):
            if not chosen_searches:
                continue
            values = []
            for weights in multiplicities:
                total = sum(weights[codes[i]] for i in chosen_searches)
                hits = sum(weights[codes[i]] for i in chosen_searches if hit(i))
                values.append(hits / total if total else math.nan)
            expected = percentile_interval(values)
            assert group.intervals[figure].to_list() == pytest.approx(expected.to_list())
    # FPIR against gallery size: random nested sub-galleries (the first N identities of the gallery order).
    curve = figures.by_gallery_size
    for j, size in enumerate(curve.sizes):
        names = set(built.names[:size])
        assert curve.fpir["all"][j] == pytest.approx(oracle.fpir(chosen, None, names))
        young = [group == "young" for group in groups]
        if "young" in curve.fpir:
            assert curve.fpir["young"][j] == pytest.approx(oracle.fpir(chosen, young, names))


def test_fnir_at_fpir_unreachable_target_accepts_nothing():
    # The non-mated searches x and y score highest of all: FPIR 1e-3 needs a threshold above every score.
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    probes = np.array([[1.0, 0.9], [0.9, 1.0], [1.0, 0.1], [0.1, 1.0]])
    _, result = run_search(probes, ["a", "b", "x", "y"], gallery, ["a", "b"], "cosine", "max", 2)
    figures = identify_figures(result, identity_codes(["a", "b", "x", "y"]), n_resamples=0)
    point = figures.fnir_at_fpir["1e-3"]
    assert point.threshold == math.inf and point.fnir == 1.0 and point.fpir == 0.0 and not point.supported


def test_gallery_order_is_seeded_and_random():
    names = [f"id{k}" for k in range(50)]
    first = build_gallery(np.eye(50), names, Similarity.COSINE, seed=3).names
    assert first == build_gallery(np.eye(50), names, Similarity.COSINE, seed=3).names
    assert first != tuple(sorted(names)) and sorted(first) == sorted(names)
