"""Fonts for the figures: Latin from matplotlib's DejaVu Sans, Japanese, Chinese and Korean from Noto Sans CJK.

Group and identity names are often written in CJK scripts (``若い女性``, ``一般``); matplotlib's default font has no
such glyphs and draws empty boxes. The Noto Sans CJK collection comes from a PyPI package (``noto-cjk-sans-otc``),
so the figures look the same on every machine whatever fonts it has installed. matplotlib falls back from one
family to the next glyph by glyph, so Latin text keeps its usual look.
"""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib
from matplotlib import font_manager

LATIN_FAMILY = "DejaVu Sans"


def cjk_font_path() -> Path:
    """The packaged Noto Sans CJK collection (``.ttc``)."""
    import noto_cjk_sans_otc

    return Path(str(noto_cjk_sans_otc.FONT_PATH))


@functools.cache
def cjk_family() -> str:
    """Register the packaged Noto Sans CJK collection with matplotlib once; returns its family name.

    The collection's first face (Noto Sans CJK JP) holds every CJK ideograph, kana and Hangul glyph.
    """
    path = str(cjk_font_path())
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


def use_cjk_fonts() -> None:
    """Make every later figure draw CJK text with Noto Sans CJK and everything else with DejaVu Sans."""
    matplotlib.rcParams["font.family"] = [LATIN_FAMILY, cjk_family()]
