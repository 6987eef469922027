"""Choosing models on the command line: dlib, ONNX presets, a user's own ONNX model with a spec file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from faceval.cli import main
from faceval.models.embedders import ModelSpec, parse_model_argument

from onnx_fixtures import SIGNATURE, write_pooled_matmul_model


def test_parse_model_arguments(tmp_path):
    assert parse_model_argument("dlib", dlib_options={"upsample": 2}) == ModelSpec(
        "dlib", "dlib", options=(("upsample", 2),)
    )
    assert parse_model_argument("japanese-face:/m/JAPANESE_FACE_v1.onnx") == ModelSpec(
        "onnx", "japanese-face", path="/m/JAPANESE_FACE_v1.onnx"
    )
    assert parse_model_argument("SFace").path is None
    spec = tmp_path / "mine.toml"
    spec.write_text('name = "my-model"\ninput_size = [224, 224]\ncrop = "whole"\nembedding_size = 512\n')
    mine = parse_model_argument("onnx:/m/x.onnx", spec_file=spec)
    assert (mine.kind, mine.name, mine.spec_file) == ("onnx", "my-model", str(spec))
    with pytest.raises(ValueError, match="--spec"):
        parse_model_argument("onnx:/m/x.onnx")
    with pytest.raises(ValueError, match="unknown model 'facenet'"):
        parse_model_argument("facenet")
    with pytest.raises(ValueError, match="takes no path"):
        parse_model_argument("dlib:/x")


def textures(root, identities=4, per_identity=3):
    rng = np.random.default_rng(3)
    for identity in range(identities):
        base = rng.integers(0, 256, (32, 32, 3))
        for k in range(per_identity):
            noisy = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            path = root / f"p{identity}" / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy).resize((64, 64)).save(path)


def test_two_onnx_models_are_evaluated_side_by_side(tmp_path):
    model = tmp_path / "JAPANESE_FACE_v1.onnx"
    write_pooled_matmul_model(model)
    spec = tmp_path / "other.toml"
    spec.write_text(
        'name = "other"\ninput_size = [224, 224]\ncrop = "whole"\nscale = 0.00392156862745098\nembedding_size = 512\n'
    )
    textures(tmp_path / "faces")
    out = tmp_path / "out"
    models = ["--model", f"japanese-face:{model}", "--model", f"onnx:{model}", "--spec", str(spec)]
    options = ["--out", str(out), "--quiet", "--jobs", "1", "--no-cache"]
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "faces"), *models, *options], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    document = json.loads((out / "metrics.json").read_text())
    assert set(document["models"]) == {"japanese-face", "other"}
    described = document["models"]["japanese-face"]["model"]
    assert described["onnx"]["metadata"]["signature"] == SIGNATURE
    for entry in document["models"].values():
        assert entry["n_images"] == 12 and entry["n_genuine"] == 12 and entry["auc"] > 0.9
    assert "japanese-face" in result.output and "other" in result.output


def test_bad_model_file_fails_before_any_work(tmp_path):
    textures(tmp_path / "faces", identities=2, per_identity=2)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    result = CliRunner().invoke(
        main, ["evaluate", str(tmp_path / "faces"), "--model", f"japanese-face:{broken}", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "japanese-face" in result.output and "broken.onnx" in result.output
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_models_command_lists_known_models():
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0
    for name in ("dlib-resnet", "sface", "yunet", "japanese-face"):
        assert name in result.output
    assert "sha256" in result.output and "Apache-2.0" in result.output
