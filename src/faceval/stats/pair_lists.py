"""Fixed lists of pairs to score (LFW ``pairs.txt`` or a CSV), matched to the scored images.

Two formats, recognised by their first line:

- LFW's ``pairs.txt``: a header ``F N`` (``N`` alone means one fold), then per fold ``N`` lines ``name n1 n2``
  (same person: ``name/name_%04d.jpg`` numbers ``n1`` and ``n2``) and ``N`` lines ``name1 n1 name2 n2``
  (different people), fields separated by tabs or spaces. The fold of each pair comes from its place.
- A CSV with a header holding ``path1,path2`` and optionally ``same`` (1/0, true/false) and ``fold`` (an integer);
  paths are relative to the dataset root. Without ``same``, a pair is genuine when its images' identities match.

A listed pair whose image is not in the dataset, or that a model did not embed, is a failed pair: reported by
line and reason, and counted, never silently dropped. A malformed line is a `PairListError` naming the file,
the line number and what was expected.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from faceval.models.extraction import EmbeddingSet
from faceval.models.scoring import ScoredPairs, Similarity, paired_scores
from faceval.sources.datasets import Dataset, DatasetError, csv_records

# Failed pairs listed one by one in metrics.json (all are counted).
_LISTED_FAILURES = 50
# How a same/genuine column may say yes and no (compared in lower case): pair lists, templates and score files.
TRUE_LABELS = ("1", "true", "yes", "same", "genuine")
FALSE_LABELS = ("0", "false", "no", "different", "impostor")


class PairListError(DatasetError):
    """A pair list that cannot be read: the file, the line and what was expected."""


@dataclass(frozen=True)
class PairList:
    """Listed pairs in file order: the two keys (image paths, or template ids), the label and fold when given,
    and the line each pair came from."""

    source: Path
    format: str
    first: tuple[str, ...]
    second: tuple[str, ...]
    same: np.ndarray | None
    fold: np.ndarray | None
    line: np.ndarray

    def __len__(self) -> int:
        return len(self.first)

    @property
    def keys(self) -> set[str]:
        """Every key the list names."""
        return set(self.first) | set(self.second)


def parse_label(text: str, source: Path, line: int, column: str) -> bool:
    """A same/genuine cell: 1/0, true/false, yes/no, same/different, genuine/impostor (any case)."""
    value = text.strip().lower()
    if value in TRUE_LABELS:
        return True
    if value in FALSE_LABELS:
        return False
    raise PairListError(f"{source}, line {line}: column {column!r} must be 1 or 0 (true/false), got {text!r}")


def _lfw_path(name: str, number: str, source: Path, line: int) -> str:
    if not number.isdigit():
        raise PairListError(f"{source}, line {line}: expected an image number after {name!r}, got {number!r}")
    return f"{name}/{name}_{int(number):04d}.jpg"


def _read_lfw(source: Path, lines: list[str]) -> PairList:
    header = lines[0].split()
    n_folds, per_class = (1, int(header[0])) if len(header) == 1 else (int(header[0]), int(header[1]))
    first, second, same, fold, numbers = [], [], [], [], []
    expected_lines = 1 + 2 * n_folds * per_class
    body = [(number, text) for number, text in enumerate(lines, start=1) if number > 1]
    for number, text in body:
        if number > expected_lines:
            if text.strip():
                raise PairListError(
                    f"{source}, line {number}: the header '{' '.join(header)}' promises {2 * n_folds * per_class} "
                    f"pairs (lines 2-{expected_lines}), but there is more: fix the header or remove the extra lines"
                )
            continue
        position = number - 2
        genuine = position % (2 * per_class) < per_class
        fields = text.split()
        if genuine:
            if len(fields) != 3:
                raise PairListError(
                    f"{source}, line {number}: expected a same-person pair 'name n1 n2' (3 fields), got "
                    f"{len(fields)}: {text.strip()!r}"
                )
            first.append(_lfw_path(fields[0], fields[1], source, number))
            second.append(_lfw_path(fields[0], fields[2], source, number))
        else:
            if len(fields) != 4:
                raise PairListError(
                    f"{source}, line {number}: expected a different-person pair 'name1 n1 name2 n2' (4 fields), "
                    f"got {len(fields)}: {text.strip()!r}"
                )
            first.append(_lfw_path(fields[0], fields[1], source, number))
            second.append(_lfw_path(fields[2], fields[3], source, number))
        same.append(genuine)
        fold.append(position // (2 * per_class))
        numbers.append(number)
    if len(first) != 2 * n_folds * per_class:
        raise PairListError(
            f"{source}: the header '{' '.join(header)}' promises {n_folds} folds of {per_class} same-person and "
            f"{per_class} different-person pairs ({2 * n_folds * per_class} lines), but the file ends at line "
            f"{len(lines)} after {len(first)} pairs"
        )
    return PairList(source, "lfw", tuple(first), tuple(second), np.array(same), np.array(fold), np.array(numbers))


def _read_csv(source: Path, columns: tuple[str, str]) -> PairList:
    first, second, same, fold, numbers = [], [], [], [], []
    has_same = has_fold = False
    for number, values in csv_records(source, columns, ("same", "fold"), PairListError):
        first.append(values[columns[0]])
        second.append(values[columns[1]])
        has_same, has_fold = "same" in values, "fold" in values
        if has_same:
            same.append(parse_label(values["same"], source, number, "same"))
        if has_fold:
            if not re.fullmatch(r"\d+", values["fold"]):
                raise PairListError(
                    f"{source}, line {number}: column 'fold' must be a whole number, got {values['fold']!r}"
                )
            fold.append(int(values["fold"]))
        numbers.append(number)
    return PairList(
        source,
        "csv",
        tuple(first),
        tuple(second),
        np.array(same, dtype=bool) if has_same else None,
        np.array(fold, dtype=np.int64) if has_fold else None,
        np.array(numbers, dtype=np.int64),
    )


def read_pair_list(path: str | Path, columns: tuple[str, str] = ("path1", "path2")) -> PairList:
    """Read an LFW ``pairs.txt`` (first line ``F N`` or ``N``) or a CSV whose header names ``columns``.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "pairs.txt").write_text("1\\t1\\nAmy\\t1\\t2\\nAmy\\t1\\tBob\\t3\\n")
    >>> pairs = read_pair_list(folder / "pairs.txt")
    >>> pairs.first, pairs.second, pairs.same.tolist(), pairs.fold.tolist()
    (('Amy/Amy_0001.jpg', 'Amy/Amy_0001.jpg'), ('Amy/Amy_0002.jpg', 'Bob/Bob_0003.jpg'), [True, False], [0, 0])
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PairListError(f"{source}: pair list not found; give the path of pairs.txt or a CSV") from None
    except UnicodeDecodeError as error:
        raise PairListError(f"{source}: not UTF-8 text ({error})") from None
    lines = text.splitlines()
    if not lines:
        raise PairListError(f"{source}: empty; expected LFW's 'folds pairs' header or a CSV header")
    if re.fullmatch(r"\s*\d+(\s+\d+)?\s*", lines[0]):
        return _read_lfw(source, lines)
    return _read_csv(source, columns)


@dataclass(frozen=True)
class ResolvedPairs:
    """The listed pairs matched to the scored images: positions (into the scored images) of the pairs that can be
    scored, their labels and folds, and every pair that cannot, with its reason."""

    pair_list: PairList
    scored: np.ndarray
    first: np.ndarray
    second: np.ndarray
    genuine: np.ndarray
    failure_reasons: dict[int, str]
    n_label_disagreements: int
    failed_labels: dict[str, int]

    @property
    def n_failed(self) -> int:
        return len(self.failure_reasons)

    @property
    def fold(self) -> np.ndarray | None:
        """The fold of each scored pair, when the list has folds."""
        return None if self.pair_list.fold is None else self.pair_list.fold[self.scored]

    def notes(self) -> list[str]:
        """Plain-language warnings: failed pairs, and labels that disagree with the images' identities."""
        notes = []
        if self.n_failed:
            summary = self.summary()
            reasons = ", ".join(f"{count} {reason}" for reason, count in summary["failures_by_reason"].items())
            notes.append(
                f"{self.pair_list.source}: {self.n_failed} of {len(self.pair_list)} listed pairs could not be scored "
                f"({reasons}); they are failed pairs (failure_rate in dataset.pairs, each in dataset.pairs.failed)"
            )
        if self.n_label_disagreements:
            notes.append(
                f"{self.pair_list.source}: {self.n_label_disagreements} pairs are labelled against their images' "
                "identities; the list's label is used"
            )
        return notes

    def summary(self) -> dict[str, Any]:
        """The ``pairs`` entry of metrics.json: counts, failures by reason, the first failed pairs by line."""
        pairs = self.pair_list
        failed = sorted(self.failure_reasons.items())
        return {
            "file": str(pairs.source),
            "format": pairs.format,
            "n_listed": len(pairs),
            "n_scored": int(self.scored.size),
            "n_failed": self.n_failed,
            "failure_rate": self.n_failed / len(pairs) if len(pairs) else None,
            "n_failed_genuine": self.failed_labels["genuine"],
            "n_failed_impostor": self.failed_labels["impostor"],
            "n_failed_unknown_label": self.failed_labels["unknown"],
            "failures_by_reason": dict(Counter(reason.split(":")[0] for _, reason in failed)),
            "failed": [
                {"line": int(pairs.line[k]), "first": pairs.first[k], "second": pairs.second[k], "reason": reason}
                for k, reason in failed[:_LISTED_FAILURES]
            ],
            "n_folds": None if pairs.fold is None else len(np.unique(pairs.fold)),
            "n_label_disagreements": self.n_label_disagreements,
        }


def resolve_pairs(
    pair_list: PairList,
    identity_of: Mapping[str, str],
    failures: Mapping[str, str],
    scored_keys: Sequence[str],
) -> ResolvedPairs:
    """Match a pair list to the scored images.

    ``identity_of`` maps every known image (or template) key to its identity (``""`` when unknown),
    ``failures`` maps a key that has no vector to why, ``scored_keys`` are the scored images in order. A pair is
    genuine by the list's ``same`` column when it has one, else by the identities.
    """
    position = {key: index for index, key in enumerate(scored_keys)}
    scored, first, second, reasons = [], [], [], {}
    for k, (a, b) in enumerate(zip(pair_list.first, pair_list.second, strict=True)):
        problems = []
        for key in (a, b):
            if key in position:
                continue
            if key not in identity_of:
                problems.append(f"not in the dataset: {key}")
            else:
                problems.append(f"no vector: {key} ({failures.get(key, 'left out')})")
        if problems:
            reasons[k] = "; ".join(problems)
        else:
            scored.append(k)
            first.append(position[a])
            second.append(position[b])
    scored_array = np.array(scored, dtype=np.int64)
    by_identity = np.array(
        [identity_of[pair_list.first[k]] == identity_of[pair_list.second[k]] for k in scored], dtype=bool
    )
    genuine = by_identity if pair_list.same is None else pair_list.same[scored_array]
    return ResolvedPairs(
        pair_list,
        scored_array,
        np.array(first, dtype=np.int64),
        np.array(second, dtype=np.int64),
        np.asarray(genuine, dtype=bool),
        reasons,
        int((genuine != by_identity).sum()),
        _failed_labels(pair_list, identity_of, reasons),
    )


def _failed_labels(pair_list: PairList, identity_of: Mapping[str, str], reasons: Mapping[int, str]) -> dict[str, int]:
    """How many failed pairs are genuine, impostor, or of unknown label (an image not in the dataset, no list label)."""
    counts = {"genuine": 0, "impostor": 0, "unknown": 0}
    for k in reasons:
        if pair_list.same is not None:
            label = "genuine" if pair_list.same[k] else "impostor"
        else:
            a, b = identity_of.get(pair_list.first[k], ""), identity_of.get(pair_list.second[k], "")
            label = "unknown" if not a or not b else "genuine" if a == b else "impostor"
        counts[label] += 1
    return counts


def listed_scored_pairs(
    models: Sequence[tuple[np.ndarray, Similarity]], pairs: ResolvedPairs, chunk_size: int = 1 << 20
) -> Iterator[ScoredPairs]:
    """The scores of the listed pairs by every model (``(vectors, similarity)`` each, indices into the vectors), in
    list order, as `ScoredPairs` chunks.

    Each score is `faceval.models.scoring.paired_scores`'s, as faceval's all-pairs scoring defines it.
    """
    for start in range(0, pairs.first.size, chunk_size):
        first = pairs.first[start : start + chunk_size]
        second = pairs.second[start : start + chunk_size]
        scores = tuple(paired_scores(vectors, first, second, similarity) for vectors, similarity in models)
        yield ScoredPairs(first, second, pairs.genuine[start : start + chunk_size], scores)


def resolve_for_models(
    pair_list: PairList, dataset: Dataset, embedding_sets: Sequence[EmbeddingSet], scored: np.ndarray
) -> ResolvedPairs:
    """`resolve_pairs` for the records ``scored`` (those every model embedded) of ``dataset``; a record some
    model failed on names that model and its reason."""
    keys = [dataset.relative_path(record) for record in dataset.records]
    failures = {}
    for embeddings in embedding_sets:
        for key, result in zip(keys, embeddings.results, strict=True):
            if not result.ok:
                failures.setdefault(key, f"{embeddings.model}: {result.failure}")
    identity_of = {key: record.identity for key, record in zip(keys, dataset.records, strict=True)}
    return resolve_pairs(pair_list, identity_of, failures, [keys[index] for index in scored])


def restrict_to_listed(dataset: Dataset, keys: set[str]) -> Dataset:
    """The dataset's records that ``keys`` name (so that only they are embedded); the others are left out."""
    records = tuple(record for record in dataset.records if dataset.relative_path(record) in keys)
    return replace(dataset, records=records)
