"""Pair lists (LFW pairs.txt, CSV) and 10-fold accuracy, checked against independent re-implementations."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold
from sklearn.preprocessing import normalize

from faceval.cli import main
from faceval.models.scoring import Similarity
from faceval.stats.pair_lists import PairListError, read_pair_list
from faceval.stats.ten_fold import insightface_ten_fold, native_ten_fold

from shared_data import shared_file


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args], catch_exceptions=False)
    return result.exit_code, result.output


def insightface_oracle(embeddings1, embeddings2, actual_issame, nrof_folds=10):
    """insightface's eval/verification.py algorithm, written out plainly as it runs it (pairs in list order,
    consecutive KFold splits, one threshold at a time), without flipped features."""
    embeddings1 = normalize(embeddings1)
    embeddings2 = normalize(embeddings2)
    thresholds = np.arange(0, 4, 0.01)
    diff = np.subtract(embeddings1, embeddings2)
    dist = np.sum(np.square(diff), 1)
    accuracy, chosen = [], []
    for train_set, test_set in KFold(n_splits=nrof_folds, shuffle=False).split(np.arange(len(actual_issame))):
        acc_train = np.zeros(len(thresholds))
        for threshold_idx, threshold in enumerate(thresholds):
            predict = np.less(dist[train_set], threshold)
            right = 0
            for k in range(len(train_set)):
                right += int(predict[k] == actual_issame[train_set][k])
            acc_train[threshold_idx] = float(right) / len(train_set)
        best = thresholds[np.argmax(acc_train)]
        predict = np.less(dist[test_set], best)
        tp = np.sum(np.logical_and(predict, actual_issame[test_set]))
        tn = np.sum(np.logical_and(np.logical_not(predict), np.logical_not(actual_issame[test_set])))
        accuracy.append(float(tp + tn) / dist[test_set].size)
        chosen.append(best)
    return accuracy, chosen, np.mean(accuracy), np.std(accuracy)


def native_oracle(scores, same, folds):
    """Brute force: for each fold, try every distinct training score as the threshold (s >= t accepts), keep the
    best training accuracy (the highest threshold among equals), measure it on the held-out fold."""
    accuracies, chosen = [], []
    for fold in sorted(set(folds.tolist())):
        train, test = folds != fold, folds == fold
        best_threshold, best_accuracy = None, -1.0
        for threshold in sorted(set(scores[train].tolist()), reverse=True):
            accuracy = np.mean((scores[train] >= threshold) == same[train])
            if accuracy > best_accuracy:
                best_threshold, best_accuracy = threshold, accuracy
        accuracies.append(float(np.mean((scores[test] >= best_threshold) == same[test])))
        chosen.append(best_threshold)
    return accuracies, chosen


def write_lfw_pairs(path: Path, numbers: dict[str, list[int]], folds: int, per_class: int, seed: int) -> None:
    """A pairs.txt in LFW's format over the given image numbers of each name: header 'folds per_class', then per
    fold the same-person lines and the different-person lines."""
    rng = np.random.default_rng(seed)
    many = [name for name, available in numbers.items() if len(available) >= 2]
    names = list(numbers)
    lines = [f"{folds}\t{per_class}"]
    for _ in range(folds):
        for _ in range(per_class):
            name = many[rng.integers(len(many))]
            a, b = rng.choice(numbers[name], 2, replace=False)
            lines.append(f"{name}\t{a}\t{b}")
        for _ in range(per_class):
            first, second = rng.choice(len(names), 2, replace=False)
            a = rng.choice(numbers[names[first]])
            b = rng.choice(numbers[names[second]])
            lines.append(f"{names[first]}\t{a}\t{names[second]}\t{b}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def synthetic_lfw(tmp_path):
    """Embeddings of 30 people x 4 images saved as an .npz with LFW paths, and a 10-fold pairs.txt over them."""
    rng = np.random.default_rng(3)
    counts = {f"Person_{k:02d}": [1, 2, 3, 4] for k in range(30)}
    centres = rng.normal(size=(30, 12))
    paths, labels, vectors = [], [], []
    for k, name in enumerate(counts):
        for number in range(1, 5):
            paths.append(f"{name}/{name}_{number:04d}.jpg")
            labels.append(name)
            vectors.append(centres[k] + rng.normal(scale=1.0, size=12))
    np.savez(tmp_path / "emb.npz", labels=np.array(labels), paths=np.array(paths), vectors=np.array(vectors))
    write_lfw_pairs(tmp_path / "pairs.txt", counts, folds=10, per_class=20, seed=5)
    return tmp_path, dict(zip(paths, vectors, strict=True))


def test_insightface_ten_fold_equals_the_independent_reimplementation(synthetic_lfw):
    folder, vector_of = synthetic_lfw
    pairs = read_pair_list(folder / "pairs.txt")
    first = np.array([vector_of[path] for path in pairs.first])
    second = np.array([vector_of[path] for path in pairs.second])
    accuracy, chosen, mean, std = insightface_oracle(first, second, pairs.same)
    result = insightface_ten_fold(first, second, pairs.same, pairs.fold)
    assert result.fold_accuracies == accuracy
    assert result.thresholds == [float(t) for t in chosen]
    assert (result.mean, result.std) == (mean, std)
    assert len(set(accuracy)) > 1 and 0.6 < mean < 0.99  # the figures vary, so a wrong fold or threshold shows


def test_native_ten_fold_equals_brute_force():
    rng = np.random.default_rng(1)
    same = rng.random(400) < 0.5
    # Rounded scores: many ties, so the tie rule and the >= comparison are exercised.
    scores = np.round(np.where(same, 0.6, 0.3) + rng.normal(scale=0.2, size=400), 2)
    folds = np.arange(400) // 40
    accuracies, chosen = native_oracle(scores, same, folds)
    result = native_ten_fold(scores, same, folds, Similarity.COSINE)
    assert result.fold_accuracies == accuracies and result.thresholds == chosen
    # Scores of a distance model are negated distances: the same decisions, thresholds reported as distances.
    distance = native_ten_fold(scores, same, folds, Similarity.EUCLIDEAN)
    assert distance.fold_accuracies == accuracies and distance.thresholds == [-t + 0.0 for t in chosen]


def test_metrics_with_lfw_pairs_reports_both_forms_and_only_the_listed_pairs(synthetic_lfw):
    folder, vector_of = synthetic_lfw
    out = folder / "out"
    code, output = run_cli("metrics", str(folder / "emb.npz"), "--metric", "cosine", "--pairs",
                           str(folder / "pairs.txt"), "--out", str(out), "--resamples", "50",
                           "--no-report")  # fmt: skip
    assert code == 0, output
    document = json.loads((out / "metrics.json").read_text())
    model = document["models"]["emb"]
    pairs = read_pair_list(folder / "pairs.txt")
    first = np.array([vector_of[path] for path in pairs.first])
    second = np.array([vector_of[path] for path in pairs.second])
    accuracy, _, mean, std = insightface_oracle(first, second, pairs.same)
    assert model["ten_fold"]["insightface"]["fold_accuracies"] == accuracy
    assert (model["ten_fold"]["insightface"]["mean"], model["ten_fold"]["insightface"]["std"]) == (mean, std)
    cosine = (normalize(first) * normalize(second)).sum(axis=1)
    native, _ = native_oracle(cosine, pairs.same, pairs.fold)
    assert model["ten_fold"]["native"]["fold_accuracies"] == native
    # Every figure is on the 400 listed pairs only, not on all 7,140 pairs of the 120 images.
    assert (model["n_genuine"], model["n_impostor"]) == (200, 200)
    assert model["auc"] == pytest.approx(roc_auc_score(pairs.same, cosine), abs=1e-12)
    assert document["dataset"]["pairs"]["n_failed"] == 0
    assert "10-fold accuracy (insightface)" in output


def test_failed_and_missing_images_are_failed_pairs(tmp_path):
    rng = np.random.default_rng(0)
    paths = np.array(["a/1.png", "a/2.png", "b/1.png", "b/2.png", "c/1.png"])
    np.savez(tmp_path / "emb.npz", labels=np.array(["a", "a", "b", "b", "c"]), paths=paths,
             vectors=rng.normal(size=(5, 4)), failed_paths=np.array(["c/2.png"]),
             failed_reasons=np.array(["no face found"]))  # fmt: skip
    (tmp_path / "pairs.csv").write_text(
        "path1,path2\na/1.png,a/2.png\nb/1.png,b/2.png\nc/1.png,c/2.png\na/1.png,d/9.png\na/1.png,b/1.png\n"
        "b/2.png,c/1.png\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    code, output = run_cli("metrics", str(tmp_path / "emb.npz"), "--metric", "cosine", "--pairs",
                           str(tmp_path / "pairs.csv"), "--out", str(out), "--resamples", "0",
                           "--no-report")  # fmt: skip
    assert code == 0, output
    document = json.loads((out / "metrics.json").read_text())
    listed = document["dataset"]["pairs"]
    assert (listed["n_listed"], listed["n_scored"], listed["n_failed"]) == (6, 4, 2)
    # An embeddings file keeps no identity for a failed image, and d/9.png is nowhere: both labels are unknown.
    assert (listed["n_failed_genuine"], listed["n_failed_impostor"], listed["n_failed_unknown_label"]) == (0, 0, 2)
    assert listed["failed"] == [
        {"line": 4, "first": "c/1.png", "second": "c/2.png", "reason": "no vector: c/2.png (emb: no face found)"},
        {"line": 5, "first": "a/1.png", "second": "d/9.png", "reason": "not in the dataset: d/9.png"},
    ]
    model = document["models"]["emb"]
    assert (model["n_genuine"], model["n_impostor"]) == (2, 2)  # same derived from the identities
    assert "ten_fold" not in model  # a CSV without a fold column has no folds
    assert "2 of 6 listed pairs could not be scored" in output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10\t1\nAmy\t1\t2\n", r"pairs.txt: the header '10 1' promises 10 folds .* ends at line 2 after 1 pairs"),
        ("1\t1\nAmy\t1\nAmy\t1\tBob\t2\n", r"pairs.txt, line 2: expected a same-person pair 'name n1 n2'"),
        ("1\t1\nAmy\t1\t2\nAmy\t1\tBob\n", r"pairs.txt, line 3: expected a different-person pair"),
        ("1\t1\nAmy\tone\t2\nAmy\t1\tBob\t2\n", r"pairs.txt, line 2: expected an image number after 'Amy'"),
        ("1\t1\nAmy\t1\t2\nAmy\t1\tBob\t2\nAmy\t1\t3\n", r"pairs.txt, line 4: the header .* there is more"),
    ],
)
def test_malformed_lfw_lines_name_file_line_and_expectation(tmp_path, text, message):
    (tmp_path / "pairs.txt").write_text(text, encoding="utf-8")
    with pytest.raises(PairListError, match=message):
        read_pair_list(tmp_path / "pairs.txt")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("first,second\na,b\n", r"pairs.csv, line 1: expected a header with the columns path1,path2"),
        ("path1,path2,same\na,b,1\nc,d\n", r"pairs.csv, line 3: expected 3 comma-separated fields"),
        ("path1,path2,same\na,b,maybe\n", r"pairs.csv, line 2: column 'same' must be 1 or 0"),
        ("path1,path2,fold\na,b,x\n", r"pairs.csv, line 2: column 'fold' must be a whole number"),
        ("path1,path2\n\na,\n", r"pairs.csv, line 3: path2 must not be empty"),
    ],
)
def test_malformed_csv_lines_name_file_line_and_expectation(tmp_path, text, message):
    (tmp_path / "pairs.csv").write_text(text, encoding="utf-8")
    with pytest.raises(PairListError, match=message):
        read_pair_list(tmp_path / "pairs.csv")


def test_csv_labels_and_folds_are_read(tmp_path):
    (tmp_path / "pairs.csv").write_text("path1,path2,same,fold\na,b,true,0\nc,d,0,1\n", encoding="utf-8")
    pairs = read_pair_list(tmp_path / "pairs.csv")
    assert pairs.same.tolist() == [True, False] and pairs.fold.tolist() == [0, 1] and pairs.line.tolist() == [2, 3]


def lfw_layout_copy(source: Path, lfw: Path) -> None:
    """Symlinks name/name_0001.jpg ... to each identity folder's images (any format: faceval reads by content)."""
    for person in sorted(p for p in source.iterdir() if p.is_dir()):
        images = sorted(f for f in person.iterdir() if f.is_file() and f.suffix.lower() in (".jpg", ".jpeg", ".png"))
        (lfw / person.name).mkdir(parents=True)
        for number, image in enumerate(images, start=1):
            os.symlink(image, lfw / person.name / f"{person.name}_{number:04d}.jpg")


@pytest.mark.slow
def test_sface_on_an_lfw_layout_copy_of_real_faces(tmp_path, monkeypatch):
    """Real faces in LFW's layout, a generated 10-fold pairs.txt over the images SFace embeds (as LFW lists only
    usable images), `faceval evaluate --pairs`: the insightface figures equal the independent re-implementation on
    the same vectors, exactly."""
    monkeypatch.setenv("FACEVAL_MODELS_DIR", str(shared_file("models")))
    lfw = tmp_path / "lfw"
    lfw_layout_copy(shared_file("faces/kpop_idols15"), lfw)
    npz = tmp_path / "sface.npz"
    code, output = run_cli("embed", str(lfw), "--model", "sface", "--out", str(npz), "--quiet")
    assert code == 0, output
    with np.load(npz) as archive:
        vector_of = dict(zip(archive["paths"].tolist(), archive["vectors"], strict=True))
    numbers: dict[str, list[int]] = {}
    for path in sorted(vector_of):
        name, file = path.split("/")
        numbers.setdefault(name, []).append(int(file[len(name) + 1 : -4]))
    write_lfw_pairs(tmp_path / "pairs.txt", numbers, folds=10, per_class=30, seed=12)
    out = tmp_path / "out"
    code, output = run_cli("evaluate", str(lfw), "--model", "sface", "--pairs", str(tmp_path / "pairs.txt"),
                           "--out", str(out), "--quiet", "--resamples", "0")  # fmt: skip
    assert code == 0, output
    document = json.loads((out / "metrics.json").read_text())
    assert (document["dataset"]["pairs"]["n_listed"], document["dataset"]["pairs"]["n_failed"]) == (600, 0)
    pairs = read_pair_list(tmp_path / "pairs.txt")
    first = np.array([vector_of[path] for path in pairs.first])
    second = np.array([vector_of[path] for path in pairs.second])
    accuracy, chosen, mean, std = insightface_oracle(first, second, pairs.same)
    figures = document["models"]["sface"]["ten_fold"]["insightface"]
    assert figures["fold_accuracies"] == accuracy
    assert figures["thresholds"] == [float(t) for t in chosen]
    assert (figures["mean"], figures["std"]) == (mean, std)
    assert 0.8 < mean < 1.0 and len(set(accuracy)) > 1


def test_python_api_takes_a_pair_list(tmp_path):
    from PIL import Image

    import faceval

    rng = np.random.default_rng(0)
    for k in range(8):
        path = tmp_path / "faces" / "ab"[k % 2] / f"{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(path)
    rows = ["path1,path2,fold", "a/0.png,a/2.png,0", "a/0.png,b/1.png,0", "b/1.png,b/3.png,1", "a/4.png,b/5.png,1"]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = faceval.evaluate(tmp_path / "faces", pairs=tmp_path / "pairs.csv", dlib_detector="none",
                              use_cache=False, progress=False, resamples=0, jobs=1)  # fmt: skip
    dlib = result.models["dlib"]
    assert (dlib.n_images, dlib.n_genuine, dlib.n_impostor) == (6, 2, 2)  # only the images and pairs listed
    document = result.to_dict()
    assert document["models"]["dlib"]["ten_fold"]["native"]["fold_sizes"] == [2, 2]


def test_groups_apply_to_the_listed_pairs_only(tmp_path):
    """Two dataset folders are two groups; with a pair list each group's counts are those of its listed pairs."""
    from PIL import Image

    rng = np.random.default_rng(5)
    paths = []
    for folder in ("east", "west"):
        for person in range(3):
            for image in range(3):
                path = tmp_path / folder / f"{folder}{person}" / f"{image}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(path)
                paths.append(f"{folder}/{folder}{person}/{image}.png")
    # Keys are relative to the common root of the two folders: east/east0/0.png.
    pairs = [(paths[i], paths[j]) for i in range(len(paths)) for j in range(i + 1, len(paths)) if (i + j) % 3 == 0]
    (tmp_path / "pairs.csv").write_text("path1,path2\n" + "".join(f"{a},{b}\n" for a, b in pairs), encoding="utf-8")
    out = tmp_path / "out"
    code, output = run_cli("evaluate", str(tmp_path / "east"), str(tmp_path / "west"), "--dlib-detector", "none",
                           "--pairs", str(tmp_path / "pairs.csv"), "--no-cache", "--quiet", "--no-audit", "-j1",
                           "--resamples", "20", "--no-report", "--out", str(out))  # fmt: skip
    assert code == 0, output
    document = json.loads((out / "metrics.json").read_text())
    assert document["dataset"]["pairs"]["n_failed"] == 0
    groups = document["models"]["dlib"]["groups"]
    for name in ("east", "west"):
        inside = [(a, b) for a, b in pairs if a.startswith(name) and b.startswith(name)]
        genuine = sum(a.split("/")[1] == b.split("/")[1] for a, b in inside)
        assert (groups[name]["n_genuine"], groups[name]["n_impostor"]) == (genuine, len(inside) - genuine)


def test_two_models_on_a_pair_list_score_the_same_listed_pairs(tmp_path):
    from faceval.evaluation import evaluate_embeddings
    from faceval.models.embedders import EmbeddingResult
    from faceval.models.extraction import EmbeddingSet
    from faceval.sources.datasets import Dataset, ImageRecord
    from faceval.stats.groups import GroupOptions

    rng = np.random.default_rng(9)
    records = tuple(ImageRecord(tmp_path / f"{k % 3}" / f"{k}.png", f"id{k % 3}") for k in range(9))
    dataset = Dataset(tmp_path, "folders", records)
    sets = [
        EmbeddingSet(name, Similarity.COSINE, {}, tuple(EmbeddingResult(v) for v in rng.normal(size=(9, 4))))
        for name in ("one", "two")
    ]
    (tmp_path / "pairs.csv").write_text("path1,path2\n0/0.png,0/3.png\n0/0.png,1/1.png\n1/4.png,2/5.png\n")
    options = {name: GroupOptions(n_resamples=0) for name in ("one", "two")}
    pairs = read_pair_list(tmp_path / "pairs.csv")
    saved = tmp_path / "scores"
    evaluation = evaluate_embeddings(dataset, sets, group_options=options, pairs=pairs, save_scores=saved)
    for index, name in enumerate(("one", "two")):
        table = evaluation.models[name].table
        assert (table.n_genuine, table.n_impostor) == (1, 2)
        # The one pass over the listed pairs wrote each model's own scores (oracle: the cosines, computed here).
        written = pq.read_table(saved / name / "scores.parquet").to_pandas()
        vectors = np.array([result.vector for result in sets[index].results])
        first, second = [int(Path(key).stem) for key in pairs.first], [int(Path(key).stem) for key in pairs.second]
        cosine = (normalize(vectors[first]) * normalize(vectors[second])).sum(axis=1)
        assert written["path1"].tolist() == list(pairs.first) and written["path2"].tolist() == list(pairs.second)
        np.testing.assert_allclose(written["score"], cosine, rtol=0, atol=1e-12)
    assert evaluation.comparisons == []
    assert "models not compared pairwise (DeLong, paired bootstrap) on a pair list" in evaluation.notes


def test_streaming_bins_of_a_pair_list_come_from_the_listed_pairs(tmp_path, monkeypatch):
    """With more listed pairs than the edges' sample, the sample is drawn among the listed pairs: every bin edge
    lies within the listed impostors' scores (oracle: the cosines, computed here), though most impostor pairs of
    the images, unlisted, score far lower."""
    from faceval.evaluation import evaluate_embeddings
    from faceval.models.embedders import EmbeddingResult
    from faceval.models.extraction import EmbeddingSet
    from faceval.sources.datasets import Dataset, ImageRecord
    from faceval.stats.groups import ALL_PAIRS, GroupOptions

    monkeypatch.setattr("faceval.stats.groups.SAMPLE_IMPOSTORS", 64)
    rng = np.random.default_rng(4)
    n = 60
    records = tuple(ImageRecord(tmp_path / f"{k % 12}" / f"{k}.png", f"id{k % 12}") for k in range(n))
    vectors = rng.normal(size=(n, 4))
    embeddings = EmbeddingSet("m", Similarity.COSINE, {}, tuple(EmbeddingResult(v) for v in vectors))
    cosine = normalize(vectors) @ normalize(vectors).T
    identity = np.arange(n) % 12
    # Listed: genuine pairs, and the impostor pairs of cosine above 0.6 (a small share of them).
    listed = [(i, j) for i in range(n) for j in range(i + 1, n) if identity[i] == identity[j] or cosine[i, j] > 0.6]
    impostors = np.array([cosine[i, j] for i, j in listed if identity[i] != identity[j]])
    assert impostors.size > 200 and impostors.size < 0.3 * np.count_nonzero(identity[:, None] != identity)
    text = "".join(f"{i % 12}/{i}.png,{j % 12}/{j}.png\n" for i, j in listed)
    (tmp_path / "pairs.csv").write_text("path1,path2\n" + text, encoding="utf-8")
    options = {"m": GroupOptions(n_resamples=20, intervals="streaming")}
    dataset = Dataset(tmp_path, "folders", records)
    evaluation = evaluate_embeddings(
        dataset, [embeddings], group_options=options, pairs=read_pair_list(tmp_path / "pairs.csv")
    )
    edges = evaluation.groups["m"].influences[ALL_PAIRS].impostors.edges
    assert edges.size > 10
    assert edges.min() >= impostors.min() - 1e-12 and edges.max() <= impostors.max() + 1e-12
