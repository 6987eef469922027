"""faceval identify's report.html (self-contained, escaped, en/ja, read by headless Chromium) and the Python API
(`faceval.identify`, `faceval.identify_embeddings`), whose figures must equal the command line's."""

from __future__ import annotations

import html
import json
import os
import re
import warnings

import pytest
from click.testing import CliRunner
from test_html_report import ARTIFACTS
from test_identify_cli import write_npz

import faceval
from faceval.cli import main
from faceval.errors import InputError
from faceval.output.html_report import number

from browser import chromium, inspect_page
from test_groups_cli import textures

# A folder name that is an HTML element: its folder is a group, so the name is in tables, plots and the command.
HOSTILE = "<img src=x onerror=alert(1)>"
OPTIONS = ["--dlib-detector", "none", "--quiet", "--jobs", "1", "--enroll", "1", "--nonmated", "0.3"]
OPTIONS += ["--resamples", "200"]


def identify(*args):
    return CliRunner().invoke(main, ["identify", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("identify_report")
    textures(root / "若い女性", ["ann", "bob", "cid", "dan"], seed=1)
    textures(root / HOSTILE, ["eve", "fay", "gus", "hal"], seed=2)
    (root / "若い女性" / "ann" / "3.png").write_bytes(b"not an image")  # a failure, and the run's note on it
    return root, [str(root / "若い女性"), str(root / HOSTILE)]


@pytest.fixture(scope="module")
def japanese_run(folders):
    root, sources = folders
    out = root / "ja"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "Glyph ... missing" warning fails the run
        result = identify(*sources, *OPTIONS, "--out", str(out), "--lang", "ja")
    assert result.exit_code == 0, result.output
    assert f"{out / 'report.html'}" in result.output
    return out


def table_rows(text: str) -> list[list[str]]:
    """Every table row of a page as the text of its cells (a line break becomes a space)."""
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", text):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)
        rows.append([html.unescape(re.sub(r"<[^>]+>", "", cell.replace("<br>", " "))) for cell in cells])
    return rows


def test_identify_report_is_self_contained_escaped_and_shows_the_figures(japanese_run):
    text = (japanese_run / "report.html").read_text(encoding="utf-8")
    document = json.loads((japanese_run / "identification.json").read_text())
    assert HOSTILE not in text and html.escape(HOSTILE) in text
    assert "<script" not in text.lower() and "<img src=x" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 4 and all(source.startswith("data:image/png;base64,") for source in sources)
    assert not re.search(r"(href|url)\((?!data:)", text)  # the CJK glyphs are a data URI too
    assert "Content-Security-Policy" in text
    for words in (
        "検索と順位の精度",
        "FPIR ごとの FNIR",
        "グループ別",
        "ギャラリーの大きさと FPIR",
        "若い女性",
        "注意事項",
    ):
        assert words in text, words
    model = document["models"]["dlib"]
    rows = table_rows(text)
    # Rank accuracy, FNIR at each FPIR (threshold in the model's units, a distance), groups with intervals, FPIR
    # against gallery size: each row as identification.json holds it.
    ranks = [number(model["cmc"][rank], 3) for rank in model["cmc"]]
    assert ["dlib", str(model["gallery_identities"]), str(model["n_gallery_images"]), str(model["n_mated"]),
            str(model["n_nonmated"]), f"{model['n_failed']['gallery']} / {model['n_failed']['probe']}",
            *ranks] in rows  # fmt: skip
    for key, point in model["fnir_at_fpir"].items():
        threshold = "なし（何も受け入れない）" if point["threshold"] is None else number(point["threshold"])
        assert [key, threshold, number(point["fnir"], 3), number(point["fpir"]), number(point["fnir_with_failures"], 3),
                str(point["n_nonmated"]), "はい" if point["supported"] else "いいえ*"] in rows  # fmt: skip
    assert not model["fnir_at_fpir"]["1e-3"]["supported"] and "3 の法則" in text
    assert set(model["groups"]) == {"若い女性", HOSTILE, "all"}
    for group, entry in model["groups"].items():

        def cell(key, digits=3, entry=entry):
            low, high = entry[f"{key}_ci"]
            return f"{number(entry[key], digits)} [{number(low, digits)}, {number(high, digits)}]"

        name = "全検索" if group == "all" else group
        expected = [name, str(entry["n_identities"]), str(entry["n_mated"]), str(entry["n_nonmated"])]
        assert [*expected, cell("rank1"), cell("fnir"), cell("fpir", 4)] in rows, group
    by_size = model["fpir_by_gallery_size"]
    assert ["全検索", *(number(value) for value in by_size["fpir"]["all"])] in rows
    assert f"閾値 {number(model['global_threshold']['threshold'])}（距離、未登録者の検索全体で FPIR 0.01" in text
    assert "dlib：距離 &lt;= 閾値 のとき候補を受け入れ（距離）" in text  # units and rules in Japanese too


def test_english_report_and_no_report(folders, japanese_run):
    root, sources = folders
    out = root / "en"
    result = identify(*sources, *OPTIONS, "--out", str(out))
    assert result.exit_code == 0, result.output
    text = (out / "report.html").read_text(encoding="utf-8")
    assert '<html lang="en">' in text and "Searches and rank accuracy" in text and "all searches" in text
    assert "FNIR at FPIR: the threshold to use" in text and html.escape(HOSTILE) in text
    # --no-report removes the page of an earlier run into the same folder: it would contradict the new figures.
    result = identify(*sources, *OPTIONS, "--out", str(out), "--no-report", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert (out / "identification.json").exists() and not (out / "report.html").exists()


def test_chromium_reads_the_identify_report(japanese_run):
    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = inspect_page(japanese_run / "report.html", ARTIFACTS / "identify_report_ja.png")
    assert page.errors == [] and page.scripts == 0
    assert page.images == 4 and page.broken == []  # cmc, fnir_fpir, groups, gallery size; no injected image
    assert "若い女性" in page.text and "検索と順位の精度" in page.text and HOSTILE in page.text
    phone = inspect_page(
        japanese_run / "report.html", ARTIFACTS / "identify_report_ja_phone.png", width=390, height=844
    )
    assert phone.errors == [] and phone.broken == []
    assert phone.overflow <= 0, "the page scrolls sideways on a phone"


def without_run_details(document):
    """A document without what differs between two runs of the same searches (time, command, files written)."""
    document = json.loads(json.dumps(document))
    for key in ("created", "command", "files"):
        document.pop(key, None)
    for model in document["models"].values():
        model.pop("files", None)
    return document


def test_python_api_gives_the_command_lines_figures(folders, japanese_run, tmp_path):
    _, sources = folders
    run = faceval.identify(sources, enroll=1, nonmated=0.3, dlib_detector="none", jobs=1, progress=False,
                           resamples=200)  # fmt: skip
    written = json.loads((japanese_run / "identification.json").read_text())
    assert without_run_details(run.to_dict()) == without_run_details(written)
    model = run.models["dlib"]
    # Thresholds in the model's units (a distance), as identification.json has them; figures in score units.
    for key, point in model.fnir_at_fpir.items():
        assert point.threshold == pytest.approx(written["models"]["dlib"]["fnir_at_fpir"][key]["threshold"])
        assert point.threshold == -model.figures.fnir_at_fpir[key].threshold > 0
    assert model.global_threshold == pytest.approx(written["models"]["dlib"]["global_threshold"]["threshold"])
    assert model.figures.cmc_at(1) == written["models"]["dlib"]["cmc"]["1"]
    with pytest.raises(InputError, match="lang must be one of en, ja"):
        run.save(tmp_path / "fr", lang="fr")
    assert not (tmp_path / "fr" / "identification.json").exists()
    path = run.save(tmp_path / "api", lang="ja")
    assert without_run_details(json.loads(path.read_text())) == without_run_details(written)
    assert "検索と順位の精度" in (tmp_path / "api" / "report.html").read_text(encoding="utf-8")
    run.save(tmp_path / "api", html=False)
    assert not (tmp_path / "api" / "report.html").exists()


def test_identify_embeddings_equals_the_command_line_on_an_npz(tmp_path):
    names, vectors, roles, groups = write_npz(tmp_path / "emb.npz")
    result = identify("--embeddings", str(tmp_path / "emb.npz"), "--out", str(tmp_path / "out"), "--resamples", "100",
                      "--rank", "2", "--target-fpir", "0.1")  # fmt: skip
    assert result.exit_code == 0, result.output
    written = without_run_details(json.loads((tmp_path / "out" / "identification.json").read_text()))
    run = faceval.identify_embeddings(vectors, names, "euclidean", roles=roles, groups=groups, name="emb",
                                      rank=2, target_fpir=0.1, resamples=100)  # fmt: skip
    document = without_run_details(run.to_dict())
    for model in (document, written):
        model["models"]["emb"].pop("model")  # the file's description names the file
    assert document["models"] == written["models"]
    assert (
        document["dataset"]["n_gallery_images"] == written["dataset"]["n_gallery_images"] == (roles == "gallery").sum()
    )
    with pytest.raises(InputError, match="'groups' has 3 values for 90 labels"):
        faceval.identify_embeddings(vectors, names, roles=roles, groups=["a", "b", "c"])
    # Generated roles: seeded, so the same call gives the same searches.
    first = faceval.identify_embeddings(vectors, names, enroll=1, nonmated=0.3, resamples=0).to_dict()
    again = faceval.identify_embeddings(vectors, names, enroll=1, nonmated=0.3, resamples=0).to_dict()
    assert without_run_details(first) == without_run_details(again)
    # round(0.3 * 30) identities out of the gallery, all 3 images searched; the others enrol 1 and search with 2.
    assert (first["models"]["embeddings"]["n_nonmated"], first["models"]["embeddings"]["n_mated"]) == (9 * 3, 21 * 2)
