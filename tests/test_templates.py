"""Templates (IJB-style): features averaged per media, summed, normalised; every figure on template pairs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sklearn.metrics import roc_auc_score

from faceval.cli import main
from faceval.models.templates import TemplateError, read_templates


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args], catch_exceptions=False)
    return result.exit_code, result.output


def oracle_template(rows: list[list[float]], media: list[str]) -> list[float]:
    """The IJB recipe in plain loops: normalise each feature, average per media, add the media, normalise."""
    per_media: dict[str, list[list[float]]] = {}
    for row, name in zip(rows, media, strict=True):
        length = math.sqrt(sum(x * x for x in row))
        per_media.setdefault(name, []).append([x / length for x in row])
    total = [0.0] * len(rows[0])
    for features in per_media.values():
        for d in range(len(total)):
            total[d] += sum(feature[d] for feature in features) / len(features)
    length = math.sqrt(sum(x * x for x in total))
    return [x / length for x in total]


@pytest.fixture
def template_files(tmp_path):
    """15 people x 6 images (3 media of 2 frames), two templates per person, and a template pair list."""
    rng = np.random.default_rng(8)
    centres = rng.normal(size=(15, 10))
    paths, labels, vectors, rows = [], [], [], ["path,template_id,media_id"]
    for person in range(15):
        for image in range(6):
            path = f"p{person}/{image}.png"
            paths.append(path)
            labels.append(f"p{person}")
            vectors.append(centres[person] * rng.uniform(0.5, 3) + rng.normal(scale=1.5, size=10))
            rows.append(f"{path},t{person}_{image // 3},m{person}_{image // 2}")
    rows.append("p0/99.png,t0_0,m0_9")  # an image not in the file: counted, left out of its template
    np.savez(tmp_path / "emb.npz", labels=np.array(labels), paths=np.array(paths), vectors=np.array(vectors),
             similarity=np.array("cosine"))  # fmt: skip
    (tmp_path / "templates.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    pairs = ["template_a,template_b"]
    for person in range(15):
        pairs.append(f"t{person}_0,t{person}_1")
        for other in range(person + 1, 15, 3):
            pairs.append(f"t{person}_0,t{other}_1")
    (tmp_path / "template_pairs.csv").write_text("\n".join(pairs) + "\n", encoding="utf-8")
    return tmp_path, paths, np.array(vectors)


def test_template_pairs_figures_match_the_oracle(template_files):
    folder, paths, vectors = template_files
    out = folder / "out"
    code, output = run_cli("metrics", str(folder / "emb.npz"), "--templates", str(folder / "templates.csv"),
                           "--template-pairs", str(folder / "template_pairs.csv"), "--out", str(out),
                           "--resamples", "0")  # fmt: skip
    assert code == 0, output
    document = json.loads((out / "metrics.json").read_text())
    templates: dict[str, list[int]] = {}
    media: dict[str, list[str]] = {}
    for line in (folder / "templates.csv").read_text().splitlines()[1:]:
        path, template, medium = line.split(",")
        if path in paths:
            templates.setdefault(template, []).append(paths.index(path))
            media.setdefault(template, []).append(medium)
    feature = {t: oracle_template([vectors[i].tolist() for i in rows], media[t]) for t, rows in templates.items()}
    scores, same = [], []
    for line in (folder / "template_pairs.csv").read_text().splitlines()[1:]:
        a, b = line.split(",")
        scores.append(sum(x * y for x, y in zip(feature[a], feature[b], strict=True)))
        same.append(a.split("_")[0] == b.split("_")[0])
    model = document["models"]["emb"]
    assert (model["n_genuine"], model["n_impostor"]) == (sum(same), len(same) - sum(same))
    assert model["auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    summary = document["dataset"]["templates"]
    assert (summary["n_templates"], summary["n_images_listed"], summary["n_images_not_in_dataset"]) == (30, 91, 1)
    assert document["dataset"]["n_images"] == 30 and document["dataset"]["pairs"]["n_failed"] == 0
    assert "30 templates of 15 identities (91 images listed in" in output


def test_templates_without_pairs_score_all_template_pairs_and_groups_apply(tmp_path):
    """Two dataset folders are two groups; with templates the group figures count templates and their pairs."""
    rng = np.random.default_rng(1)
    rows = ["path,template_id"]
    for folder in ("east", "west"):
        for person in range(3):
            for image in range(4):
                path = tmp_path / folder / f"{folder}{person}" / f"{image}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(path)
                rows.append(f"{folder}/{folder}{person}/{image}.png,{folder}{person}_{image // 2}")
    (tmp_path / "templates.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    code, output = run_cli("evaluate", str(tmp_path / "east"), str(tmp_path / "west"), "--dlib-detector", "none",
                           "--templates", str(tmp_path / "templates.csv"), "--no-cache", "--quiet", "--no-audit", "-j1",
                           "--resamples", "20", "--no-report", "--out", str(out))  # fmt: skip
    assert code == 0, output
    model = json.loads((out / "metrics.json").read_text())["models"]["dlib"]
    assert (model["n_images"], model["n_genuine"], model["n_impostor"]) == (12, 6, 60)
    groups = model["groups"]
    assert groups["east"]["n_images"] == 6 and (groups["east"]["n_genuine"], groups["east"]["n_impostor"]) == (3, 12)
    # dlib's customary 0.6 is a distance between raw descriptors, not between normalised templates: not applied.
    assert "at_reference_threshold" not in model and model["at_threshold"] is None
    assert model["units"] == "distance between L2-normalised templates"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,template\na.png,t1\n", r"templates.csv, line 1: expected a header with the columns path,template_id"),
        ("path,template_id\na.png,t1\nb.png\n", r"templates.csv, line 3: expected 2 comma-separated fields"),
        ("path,template_id,media_id\na.png,t1,\n", r"templates.csv, line 2: media_id must not be empty"),
    ],
)
def test_malformed_template_lines(tmp_path, text, message):
    (tmp_path / "templates.csv").write_text(text, encoding="utf-8")
    with pytest.raises(TemplateError, match=message):
        read_templates(tmp_path / "templates.csv")


def test_a_template_of_two_people_is_an_error(template_files):
    folder, _, _ = template_files
    (folder / "mixed.csv").write_text("path,template_id\np0/0.png,t\np1/0.png,t\n", encoding="utf-8")
    code, output = run_cli("metrics", str(folder / "emb.npz"), "--templates", str(folder / "mixed.csv"),
                           "--out", str(folder / "out"), "--no-report")  # fmt: skip
    assert code == 1 and "template 't' mixes identity values p0, p1" in output
