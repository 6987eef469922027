"""The formats a score file may have (``faceval scores --format``) and how to tell them apart, without pyarrow.

``bob4`` and ``bob5`` are bob.measure's space-separated text files; ``csv`` has a header with ``score`` and
``genuine``; ``parquet`` is what ``--save-scores`` writes. `faceval.score_files` reads them.
"""

from __future__ import annotations

from pathlib import Path

from faceval.sources.datasets import DatasetError

BOB_COLUMNS = {
    "bob4": ("claimed_id", "real_id", "test_label", "score"),
    "bob5": ("claimed_id", "model_label", "real_id", "test_label", "score"),
}
FORMATS = ("bob4", "bob5", "csv", "parquet")


class ScoreFileError(DatasetError):
    """A score file that cannot be read: the file, the line and what was expected."""


def detect_format(path: Path) -> str:
    """``csv``/``parquet`` by the file's suffix, else ``bob4`` or ``bob5`` by the number of fields of line 1."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        return suffix[1:]
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError) as error:
        raise ScoreFileError(f"{path}: cannot be read as a text score file ({error})") from None
    fields = len(first.split(" "))
    for name, columns in BOB_COLUMNS.items():
        if fields == len(columns):
            return name
    raise ScoreFileError(
        f"{path}, line 1: expected bob's 4 fields 'claimed_id real_id test_label score' or 5 fields "
        f"'claimed_id model_label real_id test_label score' separated by single spaces, got {fields}; "
        "for a CSV give it a .csv name or --format csv"
    )
