"""faceval identify end to end: roles (given, generated, distractors), errors before embedding, the output files,
and real faces (SFace) checked against brute force."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

from faceval.cli import main
from faceval.sources.datasets import Dataset, DatasetError, ImageRecord
from faceval.stats.gallery import RoleOptions, assign_roles, generate_roles

from identification_oracle import Oracle
from shared_data import shared_file
from test_groups_cli import textures


def identify(*args):
    return CliRunner().invoke(main, ["identify", *args], catch_exceptions=False)


def test_generated_roles_enrol_k_per_identity_and_keep_a_share_out():
    identities = [f"id{k}" for k in range(10) for _ in range(4)]
    roles = generate_roles(identities, RoleOptions(enroll=2, nonmated=0.3, seed=5))
    assert roles == generate_roles(identities, RoleOptions(enroll=2, nonmated=0.3, seed=5))
    assert roles != generate_roles(identities, RoleOptions(enroll=2, nonmated=0.3, seed=6))
    enrolled = Counter(identity for identity, role in zip(identities, roles, strict=True) if role == "gallery")
    assert len(enrolled) == 7 and set(enrolled.values()) == {2}


def test_role_errors_name_rows_and_identities():
    records = tuple(
        ImageRecord(f"{k}.png", name, {"role": role})
        for k, (name, role) in enumerate([("a", "gallery"), ("a", "Probe "), ("b", "enrol"), ("b", "")])
    )
    dataset = Dataset(".", "manifest", records, (), ("role",))
    with pytest.raises(DatasetError, match=r"rows 4 \('enrol'\), 5 \(''\)"):
        assign_roles(dataset, RoleOptions())
    with pytest.raises(DatasetError, match="drop one of the two"):
        assign_roles(dataset, RoleOptions(enroll=1), given=["gallery", "probe", "probe", "probe"])
    with pytest.raises(DatasetError, match="no gallery image"):
        assign_roles(dataset, RoleOptions(), given=["probe"] * 4)
    with pytest.raises(DatasetError, match="no probe"):
        assign_roles(dataset, RoleOptions(), given=["gallery"] * 4)
    plain = Dataset(".", "flat", tuple(ImageRecord(f"{k}.png", n) for k, n in enumerate("aabbbc")))
    with pytest.raises(DatasetError, match=r"2 have fewer: 'a \(2\)', 'c \(1\)'"):
        assign_roles(plain, RoleOptions(enroll=3))


def test_a_bad_role_fails_before_any_model_is_loaded(tmp_path):
    paths = textures(tmp_path / "faces", ["ann", "bob"], per_identity=2)
    rows = ["path,identity,role"] + [f"{p.relative_to(tmp_path).as_posix()},{p.parent.name},judge" for p in paths]
    (tmp_path / "people.csv").write_text("\n".join(rows) + "\n")
    # The model file does not exist: a role error must come first.
    result = identify(
        "--manifest",
        str(tmp_path / "people.csv"),
        "--model",
        "onnx:/nowhere.onnx",
        "--no-cache",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 1 and "role must be 'gallery' or 'probe'" in result.output and "judge" in result.output
    result = identify(str(tmp_path / "faces"), "--enroll", "3", "--model", "onnx:/nowhere.onnx", "--no-cache")
    assert result.exit_code == 1 and "'ann (2)', 'bob (2)'" in result.output


def write_npz(path, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"p{k}" for k in range(30) for _ in range(3)]
    vectors = rng.integers(-2, 3, (len(names), 4)).astype(float)
    vectors[1::3] = vectors[::3] + rng.integers(-1, 2, (30, 4))  # mates close to their gallery image
    roles = np.array(["gallery" if k % 3 == 0 and int(name[1:]) < 22 else "probe" for k, name in enumerate(names)])
    groups = np.array(["even" if int(name[1:]) % 2 == 0 else "odd" for name in names])
    np.savez(
        path, labels=np.array(names), vectors=vectors, roles=roles, groups=groups, similarity=np.array("euclidean")
    )
    return names, vectors, roles, groups


def test_embeddings_file_with_roles_and_groups(tmp_path):
    names, vectors, roles, groups = write_npz(tmp_path / "emb.npz")
    out = tmp_path / "out"
    result = identify(
        "--embeddings",
        str(tmp_path / "emb.npz"),
        "--out",
        str(out),
        "--resamples",
        "100",
        "--target-fpir",
        "0.1",
        "--rank",
        "2",
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "identification.json").read_text())
    model = document["models"]["emb"]
    gallery, probes = roles == "gallery", roles == "probe"
    oracle = Oracle(vectors[probes], np.array(names)[probes], vectors[gallery], np.array(names)[gallery], "euclidean")
    assert model["n_mated"] == 22 * 2 and model["n_nonmated"] == 8 * 3 and model["gallery_identities"] == 22
    assert model["cmc"]["1"] == pytest.approx(oracle.cmc(1)) and model["cmc"]["5"] == pytest.approx(oracle.cmc(5))
    fnir, fpir, threshold = oracle.fnir_at_fpir(0.1, 2)
    point = model["fnir_at_fpir"]["1e-1"]
    # Thresholds in the model's units: a distance, accepted when distance <= threshold.
    assert (point["fnir"], point["fpir"], point["threshold"]) == pytest.approx((fnir, fpir, -threshold))
    assert point["supported"] is False  # 24 non-mated searches < 3 / 0.1
    even = [g == "even" for g in groups[probes]]
    assert model["groups"]["even"]["fpir"] == pytest.approx(oracle.fpir(threshold, even))
    assert model["groups"]["even"]["fnir"] == pytest.approx(oracle.fnir(threshold, 2, even))
    assert model["groups"]["all"]["rank1_ci"] is not None
    for name in (
        "identification.json",
        "candidates.csv",
        "roles.csv",
        "cmc.png",
        "fnir_fpir.png",
        "emb/identify_groups.png",
        "emb/fpir_gallery_size.png",
    ):
        assert (out / name).exists(), name
    with open(out / "candidates.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    first = [row for row in rows if row["rank"] == "1"]
    assert len(first) == probes.sum()
    assert "1:N identification" in result.output and "FNIR@FPIR1e-1" in result.output
    # Your own threshold, in the model's units (a distance): the groups and the gallery-size curve use it.
    result = identify(
        "--embeddings", str(tmp_path / "emb.npz"), "--out", str(out), "--resamples", "0", "--threshold", "1.5"
    )
    model = json.loads((out / "identification.json").read_text())["models"]["emb"]
    assert model["global_threshold"] == {"threshold": 1.5, "chosen_by": "given"}
    assert model["groups"]["odd"]["fpir"] == pytest.approx(oracle.fpir(-1.5, [not e for e in even]))
    assert model["fpir_by_gallery_size"]["fpir"]["all"][-1] == pytest.approx(oracle.fpir(-1.5))


def test_folder_roles_csv_repeats_the_run_and_distractors_join_the_gallery(tmp_path):
    textures(tmp_path / "faces", ["ann", "bob", "cid", "dan", "eve"], per_identity=3, seed=1)
    textures(tmp_path / "crowd", ["x1", "x2", "x3"], per_identity=1, seed=2)
    store = str(tmp_path / "store.sqlite")
    options = ["--dlib-detector", "none", "--quiet", "--jobs", "1", "--cache", store, "--resamples", "50"]
    first = tmp_path / "first"
    result = identify(
        str(tmp_path / "faces"),
        "--enroll",
        "1",
        "--nonmated",
        "0.4",
        "--distractors",
        str(tmp_path / "crowd"),
        "--out",
        str(first),
        *options,
    )
    assert result.exit_code == 0, result.output
    model = json.loads((first / "identification.json").read_text())["models"]["dlib"]
    assert model["gallery_identities"] == 3 + 3 and model["n_mated"] == 3 * 2 and model["n_nonmated"] == 2 * 3
    second = tmp_path / "second"
    result = identify("--manifest", str(first / "roles.csv"), "--out", str(second), *options)
    assert result.exit_code == 0, result.output
    again = json.loads((second / "identification.json").read_text())["models"]["dlib"]
    assert again["cmc"] == model["cmc"] and again["fnir_at_fpir"] == model["fnir_at_fpir"]


def test_real_faces_sface_against_brute_force(tmp_path, monkeypatch):
    """kpop_idols15 (15 identities) and glint360k (12), 8 images each, --enroll 1 --nonmated 0.3, per dataset."""
    faces = shared_file("faces")
    monkeypatch.setenv("FACEVAL_MODELS_DIR", str(shared_file("models")))
    with open(faces / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept, per_identity = [], Counter()
    glint_ids = sorted({r["identity"] for r in rows if r["dataset"] == "glint360k_celeb24_sample"})[:12]
    for row in rows:
        wanted = row["dataset"] == "kpop_idols15" or row["identity"] in glint_ids
        if wanted and per_identity[row["identity"]] < 8:
            per_identity[row["identity"]] += 1
            kept.append(f"{(faces / row['path']).as_posix()},{row['identity']},{row['dataset']}")
    (tmp_path / "people.csv").write_text("path,identity,dataset\n" + "\n".join(kept) + "\n")
    cache = ["--cache", str(tmp_path / "store.sqlite"), "--quiet"]
    result = CliRunner().invoke(
        main,
        [
            "embed",
            "--manifest",
            str(tmp_path / "people.csv"),
            "--model",
            "sface",
            "--out",
            str(tmp_path / "sface.npz"),
            *cache,
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    result = identify(
        "--manifest",
        str(tmp_path / "people.csv"),
        "--model",
        "sface",
        "--enroll",
        "1",
        "--nonmated",
        "0.3",
        "--group-by",
        "dataset",
        "--out",
        str(out),
        *cache,
    )
    assert result.exit_code == 0, result.output
    model = json.loads((out / "identification.json").read_text())["models"]["sface"]
    # The oracle: the same vectors, the same roles (roles.csv), plain loops.
    archive = np.load(tmp_path / "sface.npz")
    vector_of = {str(p): v for p, v in zip(archive["paths"], archive["vectors"], strict=True)}
    with open(out / "roles.csv", newline="") as handle:
        every_role = list(csv.DictReader(handle))
    roles = [row for row in every_role if row["path"] in vector_of]  # failures take no part in the search

    def vector(row):
        return vector_of[row["path"]]

    gallery = [row for row in roles if row["role"] == "gallery"]
    probes = [row for row in roles if row["role"] == "probe"]
    oracle = Oracle(
        [vector(r) for r in probes],
        [r["identity"] for r in probes],
        [vector(r) for r in gallery],
        [r["identity"] for r in gallery],
        "cosine",
    )
    assert model["n_mated"] == sum(oracle.mated) and model["n_nonmated"] == len(probes) - sum(oracle.mated)
    for rank in ("1", "5", "10"):
        assert model["cmc"][rank] == pytest.approx(oracle.cmc(int(rank)))
    # A probe without a vector is a miss when its identity is enrolled, no candidate when it is not.
    enrolled = {row["identity"] for row in gallery}
    failed = [row for row in every_role if row["path"] not in vector_of and row["role"] == "probe"]
    failed_mated = sum(row["identity"] in enrolled for row in failed)
    assert failed, "YuNet finds no face in a few of these glint crops: the failure accounting must be exercised"
    assert model["n_failed"]["mated"] == failed_mated and model["n_failed"]["probe"] == len(failed)
    n_mated, n_nonmated = model["n_mated"], model["n_nonmated"]
    for key, target in (("1e-1", 0.1), ("1e-2", 0.01), ("1e-3", 0.001)):
        fnir, fpir, threshold = oracle.fnir_at_fpir(target, 1)
        point = model["fnir_at_fpir"][key]
        assert point["fnir"] == pytest.approx(fnir) and point["fpir"] == pytest.approx(fpir)
        assert point["threshold"] == (None if math.isinf(threshold) else pytest.approx(threshold))
        assert point["fnir_with_failures"] == pytest.approx((fnir * n_mated + failed_mated) / (n_mated + failed_mated))
        assert point["fpir_with_failures"] == pytest.approx(
            fpir * n_nonmated / (n_nonmated + len(failed) - failed_mated)
        )
    chosen = model["global_threshold"]["threshold"]
    kpop = [r["identity"].startswith("kpop") for r in probes]
    assert model["groups"]["kpop_idols15"]["fnir"] == pytest.approx(oracle.fnir(chosen, 1, kpop))
    assert model["groups"]["kpop_idols15"]["fpir"] == pytest.approx(oracle.fpir(chosen, kpop))


def test_two_models_search_the_same_roles(tmp_path):
    from onnx_fixtures import write_pooled_matmul_model

    model = tmp_path / "JAPANESE_FACE_v1.onnx"
    write_pooled_matmul_model(model)
    spec = tmp_path / "other.toml"
    spec.write_text('name = "other"\ninput_size = [224, 224]\ncrop = "whole"\nembedding_size = 512\n')
    paths = textures(tmp_path / "faces", [f"p{k}" for k in range(8)], per_identity=3, seed=4)
    rows = ["path,identity,role"] + [
        f"{p.relative_to(tmp_path).as_posix()},{p.parent.name},"
        f"{'gallery' if p.stem == '0' and p.parent.name < 'p6' else 'probe'}"
        for p in paths
    ]
    (tmp_path / "people.csv").write_text("\n".join(rows) + "\n")
    models = ["--model", f"japanese-face:{model}", "--model", f"onnx:{model}", "--spec", str(spec)]
    common = ["--quiet", "--jobs", "1", "--cache", str(tmp_path / "store.sqlite")]
    out = tmp_path / "out"
    result = identify(
        "--manifest",
        str(tmp_path / "people.csv"),
        *models,
        "--out",
        str(out),
        "--resamples",
        "0",
        "--target-fpir",
        "0.2",
        *common,
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "identification.json").read_text())
    assert set(document["models"]) == {"japanese-face", "other"}
    for name, argument in (("japanese-face", f"japanese-face:{model}"), ("other", f"onnx:{model}")):
        npz = tmp_path / f"{name}.npz"
        embedded = CliRunner().invoke(
            main,
            [
                "embed",
                "--manifest",
                str(tmp_path / "people.csv"),
                "--model",
                argument,
                "--spec",
                str(spec),
                "--out",
                str(npz),
                *common,
            ],
        )
        assert embedded.exit_code == 0, embedded.output
        archive = np.load(npz)
        labels, vectors = archive["labels"], archive["vectors"]
        role = {row.split(",")[0]: row.split(",")[2] for row in rows[1:]}
        gallery = np.array([role[str(p)] == "gallery" for p in archive["paths"]])
        oracle = Oracle(vectors[~gallery], labels[~gallery], vectors[gallery], labels[gallery], "cosine")
        entry = document["models"][name]
        assert entry["n_mated"] == 12 and entry["n_nonmated"] == 6
        assert entry["cmc"]["1"] == pytest.approx(oracle.cmc(1)) and entry["cmc"]["5"] == pytest.approx(oracle.cmc(5))
        fnir, fpir, threshold = oracle.fnir_at_fpir(0.1, 1)
        point = entry["fnir_at_fpir"]["1e-1"]
        assert (point["fnir"], point["fpir"], point["threshold"]) == pytest.approx((fnir, fpir, threshold))
