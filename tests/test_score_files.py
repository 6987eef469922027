"""Score files in (bob 4/5-column, CSV, Parquet) and out (--save-scores), checked against scikit-learn."""

from __future__ import annotations

import html
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from faceval import score_files
from faceval.cli import main
from faceval.score_files import ScoreFileError, read_score_file


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def same_scores(tmp_path):
    """One set of scores written as bob 4-column, bob 5-column and CSV files, with its labels."""
    rng = np.random.default_rng(4)
    n = 3000
    claimed = rng.integers(0, 40, n)
    real = np.where(rng.random(n) < 0.3, claimed, (claimed + rng.integers(1, 40, n)) % 40)
    genuine = claimed == real
    scores = np.round(np.where(genuine, 1.0, 0.0) + rng.normal(size=n), 3)  # rounded: ties matter
    group = np.where(rng.random(n) < 0.5, "A", "B")
    with open(tmp_path / "four.txt", "w") as handle:
        for k in range(n):
            handle.write(f"id{claimed[k]} id{real[k]} probe{k} {float(scores[k])!r}\n")
    with open(tmp_path / "five.txt", "w") as handle:
        for k in range(n):
            handle.write(f"id{claimed[k]} model{claimed[k]} id{real[k]} probe{k} {float(scores[k])!r}\n")
    with open(tmp_path / "scores.csv", "w") as handle:
        handle.write("score,genuine,site\n")
        for k in range(n):
            handle.write(f"{float(scores[k])!r},{int(genuine[k])},{group[k]}\n")
    return tmp_path, scores, genuine, group


def test_bob4_bob5_and_csv_give_sklearns_auc(same_scores, monkeypatch):
    folder, scores, genuine, _ = same_scores
    # Small blocks: the files stream in many batches, as millions of lines would.
    monkeypatch.setattr(score_files, "_BLOCK_BYTES", 4096)
    expected = roc_auc_score(genuine, scores)
    for name, file_format in (("four.txt", "bob4"), ("five.txt", "bob5"), ("scores.csv", "csv")):
        out = folder / f"out-{file_format}"
        code, output = run_cli("scores", str(folder / name), "--out", str(out), "--no-report")
        assert code == 0, output
        document = json.loads((out / "metrics.json").read_text())
        model = document["models"][name.split(".")[0]]
        assert model["model"]["format"] == file_format
        assert model["auc"] == pytest.approx(expected, abs=1e-12), file_format
        assert (model["n_genuine"], model["n_impostor"]) == (genuine.sum(), (~genuine).sum())
        assert document["dataset"]["n_scores"] == len(scores)
        assert (out / name.split(".")[0] / "sweep.csv").is_file() and (out / "roc.png").is_file()
        assert "3,000 scores from" in output


# A group value is untrusted text, like a folder name: report.html must show it, escaped.
SITES = {"A": "A", "B": "<i>B</i>"}


def test_lower_is_better_and_groups(same_scores):
    folder, scores, genuine, group = same_scores
    with open(folder / "distances.csv", "w") as handle:
        handle.write("genuine,score,site\n")
        for k in range(len(scores)):
            handle.write(f"{'true' if genuine[k] else 'false'},{-float(scores[k])!r},{SITES[group[k]]}\n")
    out = folder / "out"
    code, output = run_cli("scores", str(folder / "distances.csv"), "--lower-is-better", "--group-by", "site",
                           "--out", str(out))  # fmt: skip
    assert code == 0, output
    model = json.loads((out / "metrics.json").read_text())["models"]["distances"]
    assert model["auc"] == pytest.approx(roc_auc_score(genuine, scores), abs=1e-12)
    assert model["accept_when"] == "score <= threshold" and model["best_f1"]["threshold"] < 0.5
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<i>" not in page and f"{len(scores):,} scores (scores (csv))" in page
    for name, site in SITES.items():
        rows = group == name
        auc = roc_auc_score(genuine[rows], scores[rows])
        assert model["score_groups"][site]["auc"] == pytest.approx(auc)
        # The terminal and report.html show each group's figures too, not only metrics.json.
        line = next(line for line in output.splitlines() if line.startswith(f"  {site} "))
        assert f"{auc:.4f}" in line
        counts = f'<td class="n">{rows[genuine].sum():,}</td><td class="n">{rows[~genuine].sum():,}</td>'
        assert f'<tr><td>{html.escape(site)}</td>{counts}<td class="n">{auc:.4f}</td>' in page


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("s.txt", "a a p1 0.5\nb a p2 0.1\na a p3\n", r"s.txt, line 3: expected 4 fields 'claimed_id real_id"),
        ("s.txt", "a a p1 0.5\nb a p2 x\n", r"s.txt, line 2: expected a finite number in column 'score', got 'x'"),
        ("s.txt", "a a p1 0.5\n\nb a p2 0.1\n", r"s.txt, line 2: expected a finite number .*, got ''"),
        ("s.txt", "a p1 0.5\n", r"s.txt, line 1: expected bob's 4 fields"),
        ("s.csv", "score,genuine\n0.5,1\n0.2,maybe\n", r"s.csv, line 3: expected 1 or 0 \(true/false\) in column"),
        ("s.csv", "score,genuine\n0.5,1\nnan,0\n", r"s.csv, line 3: expected a finite number in column 'score'"),
        ("s.csv", "score,genuine\n0.5,1\n0.2,0,x\n", r"s.csv, line 3: expected one comma-separated field per"),
        ("s.csv", "score,label\n0.5,1\n", r"s.csv, line 1: expected a header with the columns score,genuine"),
    ],
)
def test_malformed_lines_name_file_line_and_expectation(tmp_path, name, text, message):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ScoreFileError, match=message):
        read_score_file(tmp_path / name)


def test_line_numbers_stay_right_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(score_files, "_BLOCK_BYTES", 1024)
    lines = [f"a {'a' if k % 2 else 'b'} p{k} {k / 1000}" for k in range(5000)]
    lines[4321] = "a a p4321 oops"
    (tmp_path / "long.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ScoreFileError, match=r"long.txt, line 4322: expected a finite number .* got 'oops'"):
        read_score_file(tmp_path / "long.txt")


def test_save_scores_writes_every_pair_and_reads_back(tmp_path):
    rng = np.random.default_rng(2)
    labels = np.repeat(["ann", "bob", "cy"], 4)
    vectors = rng.normal(size=(12, 8))
    paths = np.array([f"{label}/{k}.png" for k, label in enumerate(labels)])
    np.savez(tmp_path / "emb.npz", labels=labels, paths=paths, vectors=vectors, similarity=np.array("euclidean"))
    out = tmp_path / "out"
    code, output = run_cli(
        "metrics", str(tmp_path / "emb.npz"), "--save-scores", "--out", str(out), "--resamples", "0", "--no-report"
    )
    assert code == 0, output
    table = pq.read_table(out / "emb" / "scores.parquet").to_pydict()
    assert len(table["score"]) == 66
    expected = {
        (paths[i], paths[j]): float(np.linalg.norm(vectors[i] - vectors[j]))
        for i in range(12)
        for j in range(i + 1, 12)
    }
    saved = {(a, b): s for a, b, s in zip(table["path1"], table["path2"], table["score"], strict=True)}
    assert saved.keys() == expected.keys()
    assert all(saved[key] == pytest.approx(expected[key], rel=1e-12) for key in expected)
    assert table["genuine"] == [a == b for a, b in zip(table["identity1"], table["identity2"], strict=True)]
    # Read back: the file says its scores are distances, so no --lower-is-better is needed.
    code, output = run_cli(
        "scores", str(out / "emb" / "scores.parquet"), "--out", str(tmp_path / "again"), "--no-report"
    )
    assert code == 0, output
    first = json.loads((out / "metrics.json").read_text())["models"]["emb"]
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())["models"]["scores"]
    assert again["auc"] == first["auc"] and again["eer"]["value"] == first["eer"]["value"]


def test_files_above_the_exact_limit_count_on_a_lattice_spanning_their_scores(tmp_path, monkeypatch):
    """As `faceval metrics` does for pairs: exact up to EXACT_MAX_PAIRS lines, a lattice of fixed memory above,
    here over a range (about -40..1e5) no default lattice covers; metrics.json says which, figures are checked
    against brute force (FMR, FNMR at every lattice threshold) and scikit-learn (AUC within its bracket)."""
    rng = np.random.default_rng(9)
    n = 4000
    genuine = rng.random(n) < 0.2
    scores = np.round(np.where(genuine, 150.0, 100.0) + 40.0 * rng.normal(size=n), 5)
    # One far score widens the range to ~1e5, so a cell (2^-5 wide) holds several scores of both labels.
    scores[0], genuine[0] = 1e5, True
    path = tmp_path / "wide.csv"
    with open(path, "w") as handle:
        handle.write("score,genuine,site\n")
        handle.writelines(
            f"{float(s)!r},{int(g)},{'AB'[k % 2]}\n" for k, (s, g) in enumerate(zip(scores, genuine, strict=True))
        )
    monkeypatch.setattr(score_files, "_BLOCK_BYTES", 8192)
    monkeypatch.setattr("faceval.stats.lattice.EXACT_MAX_PAIRS", n - 1)
    counts = read_score_file(path, group_by=["site"])
    assert counts.n_lines == n and counts.lattice is not None
    lattice = counts.lattice
    assert lattice.low <= scores.min() and lattice.high >= scores.max()
    assert (lattice.high - lattice.low) * 2.0**lattice.bits <= 2**22 + 1
    table, groups = counts.tables()
    assert table.thresholds.size < np.unique(scores).size
    for threshold, accepted_genuine, accepted_impostor in zip(
        table.thresholds, table.genuine_accepted, table.impostor_accepted, strict=True
    ):
        assert accepted_genuine == np.count_nonzero(genuine & (scores >= threshold))
        assert accepted_impostor == np.count_nonzero(~genuine & (scores >= threshold))
    rows = np.arange(n) % 2 == 1
    assert groups["B"].n_genuine + groups["B"].n_impostor == rows.sum()
    assert groups["B"].genuine_accepted[-1] == np.count_nonzero(genuine[rows])

    out = tmp_path / "out"
    code, output = run_cli("scores", str(path), "--out", str(out), "--no-report")
    assert code == 0, output
    model = json.loads((out / "metrics.json").read_text())["models"]["wide"]
    assert model["resolution"]["kind"] == "absolute lattice"
    bracket = model["resolution"]["auc_bracket"]
    assert 0 < bracket < 1e-2
    assert abs(model["auc"] - roc_auc_score(genuine, scores)) <= bracket + 1e-12

    # At the limit itself the counts stay exact, one threshold per distinct score.
    monkeypatch.setattr("faceval.stats.lattice.EXACT_MAX_PAIRS", n)
    exact = read_score_file(path)
    assert exact.lattice is None and exact.tables()[0].thresholds.size == np.unique(scores).size


@pytest.mark.parametrize("text", ["a a p1 0.5\nb a p2 0.25\n", "a a p1 0.5\nb a p2 0.25", "a a p1 0.5\n\nb a p2 0.2\n"])
def test_count_lines_matches_the_rows_read(tmp_path, text):
    path = tmp_path / "scores.txt"
    path.write_text(text)
    expected = text.rstrip("\n").count("\n") + 1
    assert score_files.count_lines(path, "bob4") == expected
    (tmp_path / "scores.csv").write_text("score,genuine\n" + "0.5,1\n" * 7)
    assert score_files.count_lines(tmp_path / "scores.csv", "csv") == 7
