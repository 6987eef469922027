"""End to end through the CLI: datasets in, metrics.json / CSV / plots out, bad input reported, not fatal."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sklearn.metrics import roc_auc_score

from faceval.cli import main

from shared_data import shared_file


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args], catch_exceptions=False)
    return result.exit_code, result.output


def read_images_csv(out):
    with open(out / "images.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def face_like(path, seed: int) -> None:
    """A small random texture: with --dlib-detector none every readable image gets a vector."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def jaffe_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("jaffe")
    code, output = run_cli("evaluate", str(shared_file("faces/jaffe")), "--model", "dlib", "--out", str(out), "--quiet")
    assert code == 0, output
    return out, output


def test_jaffe_auc_matches_reference(jaffe_run):
    out, output = jaffe_run
    document = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    model = document["models"]["dlib"]
    assert document["dataset"]["n_images"] == 213 and document["dataset"]["n_identities"] == 10
    assert model["n_images"] + model["n_failed"] == 213
    assert model["n_pairs"] == model["n_images"] * (model["n_images"] - 1) // 2
    # The reference measured independently with the seed's method, as ../shared/faces/README.md quotes it (three
    # decimals): faceval's AUC must round to it.
    reference = re.search(r"jaffe AUC (0\.\d+)", shared_file("faces/README.md").read_text(encoding="utf-8"))
    assert reference is not None
    assert round(model["auc"], len(reference.group(1)) - 2) == float(reference.group(1))
    assert model["eer"]["low"] <= model["eer"]["value"] <= model["eer"]["high"]
    assert 0 < model["best_f1"]["threshold"] < 1.2  # a distance, dlib's own units
    assert set(model["tar_at_far"]) == {"1e-1", "1e-2", "1e-3", "1e-4", "1e-5", "1e-6"}
    assert model["model"]["files"]["descriptor"]["sha256"]
    assert document["environment"]["packages"]["dlib-bin"]
    assert "AUC" in output and "0.98" in output


def test_jaffe_outputs_agree_with_each_other(jaffe_run):
    out, _ = jaffe_run
    document = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    model = document["models"]["dlib"]
    with open(out / "dlib" / "sweep.csv") as handle:
        sweep = list(csv.DictReader(handle))
    best = max(sweep, key=lambda row: (float(row["f1"]), -float(row["threshold"])))
    assert float(best["threshold"]) == pytest.approx(model["best_f1"]["threshold"])
    assert int(sweep[-1]["tp"]) + int(sweep[-1]["fp"]) == model["n_pairs"]  # loosest threshold accepts all
    with open(out / "dlib" / "sweep_grid.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 100  # the seed's grid 0.10 .. 1.09
    with open(out / "models.csv") as handle:
        (table_row,) = list(csv.DictReader(handle))
    assert float(table_row["auc"]) == model["auc"] and int(table_row["n_failed"]) == model["n_failed"]
    assert float(table_row["best_f1_threshold"]) == model["best_f1"]["threshold"]
    rows = read_images_csv(out)
    assert len(rows) == 213 + document["dataset"]["n_skipped_files"]
    assert sum(row["status"] == "embedded" for row in rows) == model["n_images"]
    for name in ("roc.png", "roc_log.png", "det.png", "dlib/threshold_metrics.png", "dlib/score_histogram.png"):
        assert (out / name).stat().st_size > 10_000


def test_flat_layout_with_japanese_names_gives_the_same_figures(tmp_path, jaffe_run):
    """The seed's layout: one folder, identity before the first '_' (Japanese names)."""
    names = {"KA": "新垣結衣", "KL": "石原さとみ", "KM": "綾瀬はるか", "KR": "長澤まさみ", "MK": "広瀬すず",
             "NA": "橋本環奈", "NM": "浜辺美波", "TM": "今田美桜", "UY": "有村架純", "YM": "吉岡里帆"}  # fmt: skip
    flat = tmp_path / "ROC用"
    flat.mkdir()
    for source in sorted(shared_file("faces/jaffe").glob("*/*.tiff")):
        shutil.copyfile(source, flat / f"{names[source.parent.name]}_{source.stem}.png")
    out = tmp_path / "out"
    code, output = run_cli("evaluate", str(flat), "--out", str(out), "--quiet")
    assert code == 0, output
    flat_doc = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    folder_doc = json.loads((jaffe_run[0] / "metrics.json").read_text(encoding="utf-8"))
    assert flat_doc["dataset"]["layout"] == "flat" and flat_doc["dataset"]["n_identities"] == 10
    assert flat_doc["models"]["dlib"]["auc"] == folder_doc["models"]["dlib"]["auc"]
    assert {row["identity"] for row in read_images_csv(out)} == set(names.values())


def test_metrics_from_embeddings_file_matches_sklearn(tmp_path):
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(12, 16))
    labels = np.repeat([f"id{k}" for k in range(12)], 5)
    vectors = centres.repeat(5, axis=0) + rng.normal(scale=0.8, size=(60, 16))
    np.savez(tmp_path / "mine.npz", labels=labels, vectors=vectors)
    out = tmp_path / "out"
    code, output = run_cli("metrics", str(tmp_path / "mine.npz"), "--metric", "cosine", "--out", str(out))
    assert code == 0, output
    model = json.loads((out / "metrics.json").read_text())["models"]["mine"]
    first, second = np.triu_indices(60, k=1)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = (unit[first] * unit[second]).sum(axis=1)
    assert model["auc"] == pytest.approx(roc_auc_score(labels[first] == labels[second], scores), abs=1e-12)
    assert model["n_genuine"] == 12 * 10 and model["n_pairs"] == 60 * 59 // 2


def test_embed_then_metrics_keeps_the_failures(tmp_path):
    data = tmp_path / "faces"
    for identity in ("ann", "bob"):
        for k in range(3):
            face_like(data / identity / f"{k}.png", seed=ord(identity[0]) * 10 + k)
    (data / "bob" / "empty.png").write_bytes(b"")
    npz = tmp_path / "dlib.npz"
    code, output = run_cli("embed", str(data), "--dlib-detector", "none", "--no-cache", "--out", str(npz), "--quiet")
    assert code == 0 and "7 images: 7 processed now, 0 from the store; 1 without a vector" in output, output
    code, output = run_cli("metrics", str(npz), "--metric", "cosine", "--out", str(tmp_path / "wrong"))
    assert code == 1 and "compared by euclidean, not cosine" in output
    code, output = run_cli("metrics", str(npz), "--out", str(tmp_path / "out"))  # the file says: euclidean
    assert code == 0, output
    model = json.loads((tmp_path / "out" / "metrics.json").read_text())["models"]["dlib"]
    assert (model["n_images"], model["n_failed"], model["n_genuine"], model["n_impostor"]) == (6, 1, 6, 9)
    assert model["fte"] == pytest.approx(1 / 7) and model["all_pairs"]["auc_ci"] is not None
    # ISO/IEC 19795-1 with failures counted against the system: a pair is scored only when both of its images
    # were embedded, with probability (6/7)^2.
    assert model["fte_for_adjusted_rates"] == pytest.approx(1 / 7)
    for point in (model["tar_at_far"]["1e-1"], model["best_f1"], model["at_reference_threshold"]):
        assert point["fnmr_with_failures"] == pytest.approx(1 - (6 / 7) ** 2 * (1 - point["fnmr"]))
        assert point["fmr_with_failures"] == pytest.approx((6 / 7) ** 2 * point["fmr"])
    eer = model["eer"]
    assert eer["fnmr_with_failures"] == pytest.approx(1 - (6 / 7) ** 2 * (1 - eer["value"]))
    assert eer["fmr_with_failures"] == pytest.approx((6 / 7) ** 2 * eer["value"])
    global_point = model["global_threshold"]
    assert global_point["fnmr_with_failures"] == pytest.approx(1 - (6 / 7) ** 2 * (1 - global_point["fnmr"]))
    group = model["all_pairs"]
    assert group["fmr_at_global_with_failures"] == pytest.approx((6 / 7) ** 2 * group["fmr_at_global"])


def test_metrics_file_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", names=np.array(["a"]))
    code, output = run_cli("metrics", str(tmp_path / "bad.npz"), "--metric", "euclidean")
    assert code != 0 and "needs arrays 'labels' and 'vectors'" in output
    np.savez(tmp_path / "text.npz", labels=np.array(["a", "b"]), vectors=np.array([["x"], ["y"]]))
    code, output = run_cli("metrics", str(tmp_path / "text.npz"), "--metric", "euclidean")
    assert code == 1 and "must be numbers" in output
    np.savez(tmp_path / "plain.npz", labels=np.array(["a", "b"]), vectors=np.eye(2))
    code, output = run_cli("metrics", str(tmp_path / "plain.npz"))
    assert code == 1 and "give --metric" in output


def test_problems_found_before_any_embedding(tmp_path):
    face_like(tmp_path / "d" / "ann" / "0.png", seed=1)
    (tmp_path / "taken").write_text("a file where the output folder should go")
    code, output = run_cli("evaluate", str(tmp_path / "d"), "--out", str(tmp_path / "taken"))
    assert code == 1 and "choose another --out" in output
    code, output = run_cli("evaluate", str(tmp_path / "d"), "--model", "dlib", "--model", "dlib")
    assert code == 1 and "given twice" in output
    code, output = run_cli("evaluate", str(tmp_path / "d"), "--threshold", "dlb=0.5", "--out", str(tmp_path / "o"))
    assert code == 1 and "--threshold names dlb" in output
    code, output = run_cli("evaluate", str(tmp_path / "d"), "--threshold", "inf", "--out", str(tmp_path / "o"))
    assert code == 1 and "finite number" in output


def test_bad_files_are_recorded_and_the_run_goes_on(tmp_path):
    data = tmp_path / "faces"
    for identity in ("ann", "bob", "cid"):
        for k in range(3):
            face_like(data / identity / f"{k}.png", seed=ord(identity[0]) * 10 + k)
    (data / "ann" / "empty.jpg").write_bytes(b"")
    (data / "bob" / "cut.jpg").write_bytes((data / "bob" / "0.png").read_bytes()[:200])
    (data / "cid" / "notes.txt").write_text("not a face")
    (data / "cid" / "garbage.png").write_bytes(b"\x00garbage" * 20)
    out = tmp_path / "out"
    code, output = run_cli("evaluate", str(data), "--dlib-detector", "none", "--out", str(out), "--quiet")
    assert code == 0, output
    rows = {row["path"]: row for row in read_images_csv(out)}
    assert rows["ann/empty.jpg"]["status"] == "failed" and "empty" in rows["ann/empty.jpg"]["failure_reason"]
    assert rows["bob/cut.jpg"]["status"] == "failed" and "truncated" in rows["bob/cut.jpg"]["failure_reason"]
    assert rows["cid/garbage.png"]["status"] == "failed" and "not an image" in rows["cid/garbage.png"]["failure_reason"]
    skipped = [row for row in rows.values() if row["status"] == "skipped"]
    assert len(skipped) == 1 and skipped[0]["path"].endswith("notes.txt")
    model = json.loads((out / "metrics.json").read_text())["models"]["dlib"]
    assert (model["n_images"], model["n_failed"], model["n_genuine"]) == (9, 3, 9)


def test_no_faces_found_is_a_failure_with_a_hint(tmp_path):
    for identity in ("ann", "bob"):
        for k in range(2):
            face_like(tmp_path / "d" / identity / f"{k}.png", seed=k)
    out = tmp_path / "out"
    code, output = run_cli("evaluate", str(tmp_path / "d"), "--out", str(out), "--quiet")
    assert code == 0, output
    rows = read_images_csv(out)
    assert all(row["status"] == "failed" and "no face found" in row["failure_reason"] for row in rows)
    assert "--dlib-detector none" in rows[0]["failure_reason"]
    assert "(no metrics)" in output


def test_one_identity_and_single_image_identities_are_explained(tmp_path):
    for k in range(3):
        face_like(tmp_path / "one" / "ann" / f"{k}.png", seed=k)
    code, output = run_cli("evaluate", str(tmp_path / "one"), "--dlib-detector", "none",
                           "--out", str(tmp_path / "o1"), "--quiet")  # fmt: skip
    assert code == 0 and "no impostor pairs (only one identity)" in output
    for identity in ("bob", "cid"):
        face_like(tmp_path / "one" / identity / "0.png", seed=len(identity))
    code, output = run_cli("evaluate", str(tmp_path / "one"), "--dlib-detector", "none",
                           "--out", str(tmp_path / "o2"), "--quiet")  # fmt: skip
    assert code == 0 and "2 of 3 identities have a single image" in output
    document = json.loads((tmp_path / "o2" / "metrics.json").read_text())
    assert document["models"]["dlib"]["n_genuine"] == 3 and document["models"]["dlib"]["auc"] is not None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "absent", "no such file or folder"),
        (lambda root: root, "no images found"),
    ],
)
def test_missing_or_empty_dataset_is_a_clear_error(tmp_path, make, message):
    code, output = run_cli("evaluate", str(make(tmp_path)), "--out", str(tmp_path / "out"))
    assert code == 1 and message in output


def test_the_cli_leaves_other_commands_modules_unimported():
    """`faceval metrics` on a few hundred images takes about a second: the CLI imports identification and the demo
    only in their commands."""
    code = "import sys, faceval.cli; print(sorted(m for m in ('faceval.identify', 'faceval.output.identify_report', "
    code += "'faceval.demo') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
