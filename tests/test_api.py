"""The public API as a user runs it: the README's Python example as a plain script and as a Jupyter notebook,
typed results, comparisons both ways, save() and to_frame()."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import faceval

from shared_data import shared_file

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The first Python block of the README's "Python API" section."""
    section = README.read_text(encoding="utf-8").split("### Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's Python API section has no python block"
    return match.group(1)


@pytest.fixture(scope="module")
def roc_folder(tmp_path_factory) -> Path:
    """A working folder holding ``ROC用``: the seed's flat layout, 4 JAFFE women x 4 images."""
    work = tmp_path_factory.mktemp("api")
    folder = work / "ROC用"
    folder.mkdir()
    for person in sorted(shared_file("faces/jaffe").iterdir())[:4]:
        for k, image in enumerate(sorted(person.glob("*.tiff"))[:4]):
            shutil.copy(image, folder / f"{person.name}_{k:03d}.tiff")
    return work


def environment(tmp: Path) -> dict[str, str]:
    env = dict(os.environ, FACEVAL_MODELS_DIR=str(shared_file("models")), XDG_CACHE_HOME=str(tmp / "cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(faceval.__file__).parents[1]), env.get("PYTHONPATH")]))
    return env


def check_saved(work: Path) -> None:
    document = json.loads((work / "results" / "metrics.json").read_text(encoding="utf-8"))
    assert set(document["models"]) == {"dlib", "sface"}
    assert document["comparisons"][0]["model_a"] == "dlib"


def test_readme_example_runs_as_a_plain_script(roc_folder, tmp_path):
    script = roc_folder / "example.py"
    script.write_text(readme_example(), encoding="utf-8")
    # No __main__ guard in the example: worker processes must not run the script again.
    assert "__main__" not in readme_example()
    shutil.rmtree(roc_folder / "results", ignore_errors=True)
    completed = subprocess.run(
        [sys.executable, str(script)], cwd=roc_folder, env=environment(tmp_path), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "dlib AUC 0." in completed.stdout and "TarAtFarPoint(" in completed.stdout
    check_saved(roc_folder)


def test_readme_example_runs_in_a_jupyter_notebook(roc_folder, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(readme_example())])
    shutil.rmtree(roc_folder / "results", ignore_errors=True)
    os.environ.update(environment(tmp_path))  # the kernel inherits this process's environment
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(roc_folder)}}
    )
    client.execute()
    output = "".join(part.get("text", "") for part in notebook.cells[0].outputs)
    assert "dlib AUC 0." in output
    check_saved(roc_folder)


def test_evaluate_embeddings_matches_sklearn_and_typed_thresholds_are_in_model_units():
    rng = np.random.default_rng(3)
    labels = np.repeat([f"id{k}" for k in range(15)], 4)
    vectors = rng.normal(size=(15, 8)).repeat(4, axis=0) + rng.normal(scale=0.9, size=(60, 8))
    result = faceval.evaluate_embeddings(vectors, labels, metric="euclidean", threshold=3.0, resamples=50)
    figures = result.models["embeddings"]
    first, second = np.triu_indices(60, k=1)
    distances = np.linalg.norm(vectors[first] - vectors[second], axis=1)
    genuine = labels[first] == labels[second]
    assert figures.auc == pytest.approx(roc_auc_score(genuine, -distances), abs=1e-12)
    # The best-F1 threshold is a distance: accepting distance <= it gives exactly the reported F1.
    accepted = distances <= figures.best_f1.threshold
    true_positives = int((accepted & genuine).sum())
    assert figures.best_f1.f1 == pytest.approx(2 * true_positives / (genuine.sum() + accepted.sum()))
    assert figures.units == "distance" and figures.accept_when == "distance <= threshold"
    assert result.groups["embeddings"].overall.intervals["auc"] is not None
    assert result.to_dict()["models"]["embeddings"]["auc"] == figures.auc


def test_compare_reads_either_way_and_names_unknown_models():
    rng = np.random.default_rng(5)
    labels = np.repeat([f"id{k}" for k in range(12)], 3)
    centres = rng.normal(size=(12, 6)).repeat(3, axis=0)
    from faceval.evaluation import evaluate_embeddings
    from faceval.models.embedders import EmbeddingResult
    from faceval.models.extraction import EmbeddingSet
    from faceval.models.scoring import Similarity
    from faceval.output.results import Result
    from faceval.sources.datasets import Dataset, ImageRecord
    from faceval.stats.groups import GroupOptions

    records = tuple(ImageRecord(Path(f"{k}.png"), label) for k, label in enumerate(labels))
    sets = [
        EmbeddingSet(
            name,
            Similarity.COSINE,
            {},
            tuple(EmbeddingResult(v) for v in centres + rng.normal(scale=s, size=centres.shape)),
        )
        for name, s in (("good", 0.3), ("poor", 1.5))
    ]
    options = {name: GroupOptions(n_resamples=100) for name in ("good", "poor")}
    result = Result(evaluate_embeddings(Dataset(Path("."), "folders", records), sets, group_options=options))
    forward, backward = result.compare("good", "poor"), result.compare("poor", "good")
    assert forward.difference == pytest.approx(result.models["good"].auc - result.models["poor"].auc)
    assert backward.difference == -forward.difference
    assert (backward.interval.low, backward.interval.high) == (-forward.interval.high, -forward.interval.low)
    with pytest.raises(KeyError, match="the models are good, poor"):
        result.compare("good", "nobody")
    frame = result.to_frame()
    assert list(frame.index) == ["good", "poor"] and frame.loc["good", "auc"] == result.models["good"].auc


def test_saving_without_the_report_removes_an_earlier_runs_page(tmp_path):
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 1.0]])
    faceval.evaluate_embeddings(vectors, ["a", "a", "b", "b"], metric="cosine", resamples=0).save(tmp_path)
    assert (tmp_path / "report.html").exists()
    faceval.evaluate_embeddings(vectors, ["a", "a", "b", "b"], metric="euclidean", resamples=0).save(
        tmp_path, html=False
    )
    assert not (tmp_path / "report.html").exists()
