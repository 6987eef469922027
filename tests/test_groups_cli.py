"""Groups through the command line: folders as groups, manifest columns, thresholds from an earlier run."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from faceval.cli import main


def textures(root, identities, per_identity=3, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for identity in identities:
        base = rng.integers(0, 256, (24, 24, 3))
        for k in range(per_identity):
            noisy = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
            path = root / identity / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy).resize((64, 64)).save(path)
            paths.append(path)
    return paths


def evaluate(*args):
    options = ["--dlib-detector", "none", "--quiet", "--jobs", "1", "--no-cache", "--resamples", "200"]
    return CliRunner().invoke(main, ["evaluate", *args, *options], catch_exceptions=False)


def test_each_folder_is_a_group(tmp_path):
    textures(tmp_path / "general", ["ann", "bob", "cid", "dan"], seed=1)
    textures(tmp_path / "young_women", ["ann", "eve", "fay"], seed=2)
    out = tmp_path / "out"
    result = evaluate(str(tmp_path / "general"), str(tmp_path / "young_women"), "--out", str(out))
    assert result.exit_code == 0, result.output
    model = json.loads((out / "metrics.json").read_text())["models"]["dlib"]
    assert model["group_by"] == ["group"]
    assert set(model["groups"]) == {"general", "young_women"}
    assert model["groups"]["general"]["n_identities"] == 4 and model["groups"]["young_women"]["n_genuine"] == 9
    # 12 and 9 images, 3 per identity: within-group impostors C(12,2) - 12 and C(9,2) - 9; the 12 x 9 pairs
    # across the groups are kept in all pairs.
    assert [model["groups"][name]["n_impostor"] for name in ("general", "young_women")] == [54, 27]
    assert model["all_pairs"]["n_impostor"] == 54 + 27 + 12 * 9
    assert model["global_threshold"]["fmr_matrix"]["groups"] == ["general", "young_women"]
    assert (out / "dlib" / "groups.csv").exists() and (out / "dlib" / "groups_fmr_heatmap.png").exists()
    assert "groups (dlib)" in result.output


def test_manifest_columns_and_thresholds_from_an_earlier_run(tmp_path):
    paths = textures(tmp_path / "faces", ["ann", "bob", "cid", "dan", "eve", "fay"])
    rows = ["path,identity,gender"] + [
        f"{p.relative_to(tmp_path).as_posix()},{p.parent.name},{'f' if p.parent.name in 'ann eve fay' else 'm'}"
        for p in paths
    ]
    (tmp_path / "people.csv").write_text("\n".join(rows) + "\n")
    manifest = ["--manifest", str(tmp_path / "people.csv"), "--group-by", "gender", "--target-fmr", "0.05"]
    first = tmp_path / "first"
    result = evaluate(*manifest, "--threshold", "dlib=0.5", "--out", str(first))
    assert result.exit_code == 0, result.output
    model = json.loads((first / "metrics.json").read_text())["models"]["dlib"]
    assert set(model["groups"]) == {"f", "m"} and model["at_threshold"]["threshold"] == 0.5
    assert model["global_threshold"]["threshold"] is not None
    second = tmp_path / "second"
    result = evaluate(*manifest, "--threshold-from", str(first / "metrics.json"), "--out", str(second))
    assert result.exit_code == 0, result.output
    applied = json.loads((second / "metrics.json").read_text())["models"]["dlib"]["applied_thresholds"]
    assert applied["global"]["threshold"] == model["global_threshold"]["threshold"]


def test_a_missing_column_is_named_with_the_available_ones(tmp_path):
    paths = textures(tmp_path / "faces", ["ann", "bob"], per_identity=2)
    rows = ["path,identity,gender"] + [f"{p.relative_to(tmp_path).as_posix()},{p.parent.name},f" for p in paths]
    (tmp_path / "people.csv").write_text("\n".join(rows) + "\n")
    result = evaluate("--manifest", str(tmp_path / "people.csv"), "--group-by", "race", "--out", str(tmp_path / "o"))
    assert result.exit_code == 1
    assert "race" in result.output and "gender" in result.output
    assert not (tmp_path / "o" / "metrics.json").exists()
