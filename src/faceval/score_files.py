"""Scores as files, both ways: figures from another system's score file, and every scored pair saved as Parquet.

Read (`read_score_file`), streamed in blocks with pyarrow so that memory never holds the text: up to
`faceval.stats.lattice.EXACT_MAX_PAIRS` lines into exact per-distinct-score counts
(`faceval.stats.metrics.ScoreCounts`), above that into counts of fixed memory on a lattice spanning the file's scores
(`faceval.stats.lattice.Lattice.spanning`, found by a first pass over the file), as ``faceval metrics`` chooses for its
pairs:

- ``bob4``: bob.measure's 4-column text file ``claimed_id real_id test_label score``,
- ``bob5``: the 5-column one ``claimed_id model_label real_id test_label score``; in both a line is genuine when
  ``claimed_id == real_id``; fields are separated by single spaces;
- ``csv``: a CSV with a header holding ``score`` and ``genuine`` (1/0, true/false) and any group columns;
- ``parquet``: a file with ``score`` and ``genuine`` columns, such as ``--save-scores`` writes.

A malformed line raises `ScoreFileError` naming the file, the line and what was expected. Scores are larger =
more alike unless ``higher_is_better=False`` (distances), as faceval's `Similarity` conventions have them.

Write (`saving_scores`): the pairs a run scores, as they stream past, into a Parquet file with the columns
``path1, path2, identity1, identity2, score, genuine`` (score in the model's units).
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from tqdm import tqdm

from faceval.models.scoring import Similarity
from faceval.output.results import Evaluation, ModelResult, Result, model_figures
from faceval.output.saved_scores import SIMILARITY_KEY
from faceval.sources.score_formats import BOB_COLUMNS, FORMATS, ScoreFileError, detect_format
from faceval.stats.lattice import Lattice, LatticeCounts, lattice_for
from faceval.stats.metrics import ScoreCounts, ScoreTable
from faceval.stats.pair_lists import FALSE_LABELS, TRUE_LABELS

# Text read per block: larger blocks make pyarrow hold several times as much at once, and gain no speed.
_BLOCK_BYTES = 1 << 20


@dataclass
class ScoreFileCounts:
    """The counts of a whole score file, overall and per group (when group columns are given): exact per distinct
    score, or on ``lattice`` (its cells hold the pairs) for files of more than `faceval.stats.lattice.EXACT_MAX_PAIRS`
    lines."""

    source: Path
    format: str
    similarity: Similarity
    lattice: Lattice | None = None
    overall: ScoreCounts | LatticeCounts = field(init=False)
    groups: dict[str, ScoreCounts | LatticeCounts] = field(default_factory=dict)
    n_lines: int = 0

    def __post_init__(self) -> None:
        self.overall = self.new_counts()

    def new_counts(self) -> ScoreCounts | LatticeCounts:
        """An empty counting state of this file's kind (exact, or on its lattice)."""
        return ScoreCounts() if self.lattice is None else LatticeCounts(self.lattice)

    def tables(self) -> tuple[ScoreTable, dict[str, ScoreTable]]:
        return self.overall.compute(), {name: counts.compute() for name, counts in sorted(self.groups.items())}


def _failed_row(path: Path, number: int, expected: str, text: str) -> ScoreFileError:
    return ScoreFileError(f"{path}, line {number}: expected {expected}, got {text!r}")


def _to_float(column: pa.ChunkedArray | pa.Array, path: Path, first_line: int) -> np.ndarray:
    """A string column as float64 scores, or the line of the first value that is not a finite number."""
    try:
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        values = None
    if values is not None and np.isfinite(values).all():
        return values
    for offset, text in enumerate(column.to_pylist()):
        try:
            number = float(text)
        except (TypeError, ValueError):
            number = np.nan
        if not np.isfinite(number):
            raise _failed_row(path, first_line + offset, "a finite number in column 'score'", text)
    raise AssertionError("unreachable: a value failed to convert but each converts")  # pragma: no cover


def _to_label(column: pa.ChunkedArray | pa.Array, path: Path, first_line: int) -> np.ndarray:
    """A ``genuine`` column (text, numbers or booleans) as bool, or the line of the first value that is neither."""
    text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(column, pa.string())))
    genuine = pc.is_in(text, value_set=pa.array(TRUE_LABELS)).to_numpy(zero_copy_only=False)
    impostor = pc.is_in(text, value_set=pa.array(FALSE_LABELS)).to_numpy(zero_copy_only=False)
    bad = ~(genuine | impostor)
    if bad.any():
        offset = int(np.flatnonzero(bad)[0])
        raise _failed_row(path, first_line + offset, "1 or 0 (true/false) in column 'genuine'", column[offset].as_py())
    return genuine


def _csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle), [])


def _csv_batches(path: Path, file_format: str, group_by: Sequence[str]) -> Iterator[tuple[pa.RecordBatch, int]]:
    """Record batches of a text score file, each with the line number of its first row.

    Empty lines are rows too (a malformed one), so that the line numbers in errors are the file's."""
    problems: list[tuple[int | None, str]] = []

    def reject(row: Any) -> str:
        problems.append((row.number, row.text))
        return "error"

    if file_format in BOB_COLUMNS:
        columns = BOB_COLUMNS[file_format]
        read = pa_csv.ReadOptions(column_names=list(columns), block_size=_BLOCK_BYTES, use_threads=False)
        parse = pa_csv.ParseOptions(
            delimiter=" ", quote_char=False, ignore_empty_lines=False, invalid_row_handler=reject
        )
        expected = f"{len(columns)} fields '{' '.join(columns)}' separated by single spaces"
        first_line = 1
    else:
        read = pa_csv.ReadOptions(block_size=_BLOCK_BYTES, use_threads=False)
        parse = pa_csv.ParseOptions(ignore_empty_lines=False, invalid_row_handler=reject)
        expected = "one comma-separated field per header column"
        first_line = 2
    names = list(BOB_COLUMNS[file_format]) if file_format in BOB_COLUMNS else _csv_header(path)
    # Everything is read as text and converted here, so that a bad value is reported with its line.
    convert = pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False)
    try:
        reader = pa_csv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        if file_format == "csv":
            missing = [name for name in ("score", "genuine", *group_by) if name not in names]
            if missing:
                raise ScoreFileError(
                    f"{path}, line 1: expected a header with the columns score,genuine"
                    f"{''.join(',' + name for name in group_by)} (missing {', '.join(missing)}); got {','.join(names)}"
                )
        for batch in reader:
            yield batch, first_line
            first_line += batch.num_rows
    except pa.ArrowInvalid as error:
        if problems:
            number, text = problems[0]
            raise _failed_row(path, number if number is not None else first_line, expected, text) from None
        raise ScoreFileError(f"{path}: not a readable {file_format} score file ({error})") from None


def _parquet_batches(path: Path, group_by: Sequence[str]) -> Iterator[tuple[pa.RecordBatch, int]]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise ScoreFileError(f"{path}: not a readable Parquet file ({error})") from None
    missing = [name for name in ("score", "genuine", *group_by) if name not in parquet.schema_arrow.names]
    if missing:
        raise ScoreFileError(f"{path}: needs the columns score, genuine (missing {', '.join(missing)})")
    first_row = 1
    for batch in parquet.iter_batches(columns=["score", "genuine", *group_by]):
        yield batch, first_row
        first_row += batch.num_rows


def count_lines(path: Path, file_format: str) -> int:
    """The number of score lines (rows) of a file, without parsing it: newlines counted in blocks (a header
    aside), or the row count a Parquet footer states."""
    if file_format == "parquet":
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowInvalid, OSError) as error:
            raise ScoreFileError(f"{path}: not a readable Parquet file ({error})") from None
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        for block in iter(partial(handle.read, 16 * _BLOCK_BYTES), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"  # a last line without its newline is a line too
    return lines - (file_format == "csv")


def _batches(path: Path, file_format: str, group_by: Sequence[str]) -> Iterator[tuple[pa.RecordBatch, int]]:
    if file_format == "parquet":
        return _parquet_batches(path, group_by)
    return _csv_batches(path, file_format, group_by)


def _score_range(path: Path, file_format: str, similarity: Similarity) -> tuple[float, float]:
    """The lowest and highest score of a file (larger = more alike), by a first pass over it."""
    low, high = np.inf, -np.inf
    for batch, first_line in _batches(path, file_format, ()):
        scores = similarity.from_model_units(_to_float(batch.column("score"), path, first_line))
        if scores.size:
            low, high = min(low, float(scores.min())), max(high, float(scores.max()))
    return low, high


def stored_similarity(path: Path) -> Similarity | None:
    """How the scores of a Parquet file written by `saving_scores` compare, else None."""
    if path.suffix.lower() != ".parquet":
        return None
    with contextlib.suppress(pa.ArrowInvalid, OSError):
        metadata = pq.read_schema(path).metadata or {}
        if SIMILARITY_KEY in metadata:
            return Similarity(metadata[SIMILARITY_KEY].decode())
    return None


def read_score_file(
    path: str | Path,
    file_format: str | None = None,
    higher_is_better: bool = True,
    group_by: Sequence[str] = (),
    progress: bool = False,
) -> ScoreFileCounts:
    """Stream a score file into counts (overall and per group of ``group_by`` columns; CSV/Parquet only): exact
    per distinct score up to `faceval.stats.lattice.EXACT_MAX_PAIRS` lines, else on a lattice spanning its scores.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "scores.txt"
    >>> _ = path.write_text("amy amy a1 0.9\\namy bob b1 0.4\\nbob bob b2 0.7\\n")
    >>> counts = read_score_file(path)
    >>> counts.format, counts.n_lines, counts.overall.n_genuine, counts.overall.n_impostor
    ('bob4', 3, 2, 1)
    """
    path = Path(path)
    if not path.is_file():
        raise ScoreFileError(f"{path}: score file not found")
    file_format = file_format or detect_format(path)
    if file_format not in FORMATS:
        raise ScoreFileError(f"{path}: unknown score file format {file_format!r}; use one of {', '.join(FORMATS)}")
    if group_by and file_format in BOB_COLUMNS:
        raise ScoreFileError(f"{path}: bob score files have no group columns; use a CSV for --group-by")
    similarity = Similarity.COSINE if higher_is_better else Similarity.EUCLIDEAN
    n_lines = count_lines(path, file_format)
    # The same choice as for scored pairs; a file's scores have no known range, so its lattice spans them.
    lattice = (
        None
        if lattice_for(similarity, n_lines) is None
        else Lattice.spanning(*_score_range(path, file_format, similarity))
    )
    result = ScoreFileCounts(path, file_format, similarity, lattice)
    bar = tqdm(desc=f"reading {path.name}", total=n_lines, unit="line", unit_scale=True, disable=not progress)
    for batch, first_line in _batches(path, file_format, group_by):
        bar.update(batch.num_rows)
        scores = similarity.from_model_units(_to_float(batch.column("score"), path, first_line))
        if file_format in BOB_COLUMNS:
            genuine = pc.equal(batch.column("claimed_id"), batch.column("real_id")).to_numpy(zero_copy_only=False)
        else:
            genuine = _to_label(batch.column("genuine"), path, first_line)
        result.overall.update(scores, genuine)
        result.n_lines += batch.num_rows
        if group_by:
            keys = np.array(batch.column(group_by[0]).cast(pa.string()).to_pylist(), dtype=object)
            for name in group_by[1:]:
                keys = keys + "/" + np.array(batch.column(name).cast(pa.string()).to_pylist(), dtype=object)
            names, codes = np.unique(keys.astype(str), return_inverse=True)
            for code, name in enumerate(names.tolist()):
                rows = codes == code
                if name not in result.groups:
                    result.groups[name] = result.new_counts()
                result.groups[name].update(scores[rows], genuine[rows])
    bar.close()
    if result.n_lines == 0:
        raise ScoreFileError(f"{path}: no scores in the file")
    return result


def group_figures(
    tables: Mapping[str, ScoreTable], similarity: Similarity, description: Mapping[str, Any]
) -> dict[str, Any]:
    """Per group of a score file: every figure of its own lines, in the file's units (``score_groups``)."""
    figures = {}
    for name, table in tables.items():
        entry = model_figures(ModelResult(name, similarity, dict(description), 0, 0, table), 0).to_dict()
        entry.pop("model")
        figures[name] = entry
    return figures


def evaluate_score_file(
    path: str | Path,
    out_dir: str | Path,
    file_format: str | None = None,
    higher_is_better: bool | None = None,
    group_by: Sequence[str] = (),
    command: Iterable[str] | None = None,
    html: bool = True,
    lang: str = "en",
    progress: bool = False,
) -> Result:
    """``faceval scores``: every figure, plot and the report from a score file; the model is named after the file.

    ``higher_is_better`` None: what a faceval Parquet file says, else larger = more alike; ``html``, ``lang``: the
    ``report.html`` as `Result.save` writes it.
    """
    path = Path(path)
    if higher_is_better is None:
        stored = stored_similarity(path)
        higher_is_better = stored is None or stored.larger_is_more_similar_in_model_units
    counts = read_score_file(path, file_format, higher_is_better, group_by, progress)
    overall, groups = counts.tables()
    similarity = counts.similarity
    direction = "higher" if higher_is_better else "lower"
    description = {
        "name": path.stem,
        "kind": "scores",
        "file": str(path),
        "format": counts.format,
        "units": f"score ({direction} = more alike)",
        "accept_when": "score >= threshold" if higher_is_better else "score <= threshold",
    }
    name = path.stem
    evaluation = Evaluation(
        dataset={
            "root": str(path),
            "layout": f"scores ({counts.format})",
            "n_images": 0,
            "n_identities": None,
            "n_scores": counts.n_lines,
        },
        models={path.stem: ModelResult(path.stem, similarity, description, 0, 0, overall)},
    )
    if groups:
        evaluation.model_extras[name] = {"score_groups": group_figures(groups, similarity, description)}
    result = Result(evaluation)
    result.save(out_dir, command, html=html, lang=lang)
    return result
