"""report.html: self-contained, escaped, in English and Japanese, and read by a real browser (headless Chromium)."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from faceval.output import plots

from browser import chromium, inspect_page
from test_groups_cli import evaluate, textures

# CI keeps what the browser saw here; locally it is a folder beside the tests (ignored by git).
ARTIFACTS = Path(os.environ.get("FACEVAL_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def japanese_run(tmp_path_factory):
    """Two groups with Japanese names, one identity folder named like an HTML script element."""
    root = tmp_path_factory.mktemp("report")
    textures(root / "若い女性", ["ann", "bob", HOSTILE], seed=1)
    textures(root / "一般", ["cid", "dan", "eve"], seed=2)
    out = root / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "Glyph ... missing" warning fails the run
        result = evaluate(str(root / "若い女性"), str(root / "一般"), "--out", str(out), "--lang", "ja")
    assert result.exit_code == 0, result.output
    return out


def test_report_is_self_contained_escaped_and_japanese(japanese_run):
    text = (japanese_run / "report.html").read_text(encoding="utf-8")
    assert HOSTILE not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text.lower()
    sources = re.findall(r'src="([^"]*)"', text)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)
    assert not re.search(r"(href|url)\((?!data:)", text)  # nothing fetched: the font is a data URI too
    for words in ("主要な指標", "使うべき閾値", "データセットの監査", "若い女性", "一般"):
        assert words in text
    english = japanese_run.parent / "en"
    result = evaluate(str(japanese_run.parent / "若い女性"), str(japanese_run.parent / "一般"), "--out", str(english))
    assert result.exit_code == 0, result.output
    assert "Headline figures" in (english / "report.html").read_text(encoding="utf-8")


def test_no_report_flag(tmp_path):
    textures(tmp_path / "faces", ["ann", "bob"], seed=3)
    result = evaluate(str(tmp_path / "faces"), "--out", str(tmp_path / "out"), "--no-report")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "metrics.json").exists() and not (tmp_path / "out" / "report.html").exists()


def test_plots_draw_cjk_names_without_missing_glyphs(tmp_path):
    names = ["若い女性", "一般", "한국어", "中文简体"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.plot_fmr_heatmap(names, np.full((4, 4), 1e-3), 1e-3, tmp_path / "heatmap.png", "若い女性 / 一般")


def test_chromium_reads_the_report(japanese_run):
    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shot = ARTIFACTS / "report_ja.png"
    page = inspect_page(japanese_run / "report.html", shot)
    assert page.errors == []
    assert page.images >= 5 and page.broken == []
    assert page.scripts == 0
    assert "若い女性" in page.text and "主要な指標" in page.text and HOSTILE in page.text
    assert shot.stat().st_size > 10_000
    phone = inspect_page(japanese_run / "report.html", ARTIFACTS / "report_ja_phone.png", width=390, height=844)
    assert phone.errors == [] and phone.broken == []
    assert phone.overflow <= 0, "the page scrolls sideways on a phone"
