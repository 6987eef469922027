"""Finding a dataset's images and their identities.

Three layouts, detected automatically and overridable:

- ``flat``: one folder of images, the identity is the file name before the first ``_`` (``新垣結衣_001.png``);
- ``folders``: one sub-folder per identity (files deeper inside it belong to it too);
- ``manifest``: a CSV with ``path,identity[,attribute columns...]``, paths relative to the CSV.

A folder that holds a ``manifest.csv`` is read through it. A folder with images both directly in it and in
subfolders is refused until the layout is chosen: either reading would leave images out, and the population
evaluated must never change silently. Paths keep the names the user gave them (a symbolic link is not replaced by
its target), so a linked folder's group is the link's name. Which files are images is decided by their content
when they are loaded, so a damaged image is a recorded failure rather than a silently missing file; only files
whose extension says they are documents or data (``.txt``, ``.csv``, ...) are set aside, and listed as skipped.
"""

from __future__ import annotations

import csv
import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from faceval.errors import FacevalError

Layout = Literal["auto", "flat", "folders", "manifest"]
MANIFEST_NAME = "manifest.csv"
NON_IMAGE_SUFFIXES = frozenset(
    {
        ".txt", ".md", ".csv", ".tsv", ".json", ".xml", ".html", ".htm", ".pdf", ".doc", ".docx", ".zip",
        ".gz", ".tar", ".7z", ".py", ".npz", ".npy", ".mat", ".pkl", ".db", ".sqlite", ".log", ".ini", ".yaml",
        ".yml", ".toml", ".mp4", ".avi", ".mov", ".mkv", ".onnx", ".dat",
    }
)  # fmt: skip


class DatasetError(FacevalError):
    """A dataset that cannot be used as given; the message names the path and the fix."""


@dataclass(frozen=True)
class ImageRecord:
    """One image of the dataset: where it is, who it shows, and any attribute columns of its manifest row."""

    path: Path
    identity: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    """The images of one dataset in a deterministic order, plus the files that were set aside and why."""

    root: Path
    layout: str
    records: tuple[ImageRecord, ...]
    skipped: tuple[tuple[Path, str], ...] = ()
    attribute_names: tuple[str, ...] = ()

    @property
    def n_images(self) -> int:
        return len(self.records)

    @property
    def identities(self) -> list[str]:
        """Identity names, sorted."""
        return sorted({record.identity for record in self.records})

    @property
    def n_identities(self) -> int:
        return len(self.identities)

    def relative_path(self, record: ImageRecord) -> str:
        """The record's path relative to the dataset root when it lies inside it, else the full path."""
        try:
            return record.path.relative_to(self.root).as_posix()
        except ValueError:
            return record.path.as_posix()


def _nfc(text: str) -> str:
    # macOS stores file names decomposed (NFD); the same Japanese name typed in a CSV is composed (NFC).
    return unicodedata.normalize("NFC", text)


def identity_from_file_name(path: Path) -> str:
    """The seed's convention: the file name without extension, up to the first ``_``."""
    return _nfc(path.stem.split("_", 1)[0])


def _visible_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, sorted, leaving out hidden ones and following linked folders.

    A linked identity folder is as much the user's as a real one (``pathlib``'s ``rglob`` would skip it silently);
    a link back to a folder above is not followed twice. An unreadable folder is an error, not a silent gap.
    """

    def unreadable(error: OSError) -> None:
        raise DatasetError(f"{error.filename}: cannot be read ({error.strerror}); fix its permissions or move it out")

    files = []
    above: dict[str, frozenset[str]] = {str(folder): frozenset()}
    for root, folders, names in os.walk(folder, onerror=unreadable, followlinks=True):
        real, seen = os.path.realpath(root), above.pop(root)
        if real in seen:  # a link to a folder above this one: following it would never end
            folders.clear()
            continue
        folders[:] = [name for name in folders if not name.startswith(".")]
        above.update((os.path.join(root, name), seen | {real}) for name in folders)
        files += [Path(root, name) for name in names if not name.startswith(".")]
    return sorted(files)


def _split_candidates(paths: Iterable[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    images, skipped = [], []
    for path in paths:
        if path.suffix.lower() in NON_IMAGE_SUFFIXES:
            skipped.append((path, f"not an image ({path.suffix} file); skipped"))
        else:
            images.append(path)
    return images, skipped


def _absolute(path: Path) -> Path:
    # Not Path.resolve(): that replaces a symbolic link by its target, and the folder's name is its group's name
    # (若い女性 -> /data/jaffe is the group 若い女性, not jaffe).
    return Path(os.path.abspath(path))


def _ambiguous_layout(folder: Path, top_level: Sequence[Path], nested: Sequence[Path]) -> DatasetError:
    return DatasetError(
        f"{folder}: {len(top_level)} images lie directly in the folder (e.g. {top_level[0].name}) and "
        f"{len(nested)} in subfolders (e.g. {nested[0].relative_to(folder).as_posix()}), so the layout is "
        "ambiguous and either reading leaves images out. Choose one: --layout flat evaluates the "
        f"{len(top_level)} top-level images (identity = file name before the first '_'), --layout folders the "
        f"{len(nested)} images in subfolders (identity = first-level folder); or move the images so that only "
        "one kind remains"
    )


def _read_folder(folder: Path, layout: Layout) -> Dataset:
    images, skipped = _split_candidates(_visible_files(folder))
    top_level = [path for path in images if path.parent == folder]
    nested = [path for path in images if path.parent != folder]
    if layout == "auto":
        if top_level and nested:
            raise _ambiguous_layout(folder, top_level, nested)
        layout = "folders" if nested else "flat"
    if layout == "flat":
        records = [ImageRecord(path, identity_from_file_name(path)) for path in top_level]
        why = (
            "lies in a subfolder, which the flat layout does not read; use --layout folders for one folder per identity"
        )
        skipped += [(path, why) for path in nested]
    else:
        records = [ImageRecord(path, _nfc(path.relative_to(folder).parts[0])) for path in nested]
        why = "lies outside any identity folder; move it into one, or use --layout flat"
        skipped += [(path, why) for path in top_level]
    skipped.sort()
    return Dataset(folder, layout, tuple(records), tuple(skipped))


def read_csv_rows(csv_path: Path, required: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Column names (stripped) and rows of a UTF-8 CSV with a header that holds the ``required`` columns."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in (reader.fieldnames or [])]
            missing = [name for name in required if name not in columns]
            if missing:
                raise DatasetError(
                    f"{csv_path}: needs the columns {', '.join(required)} (missing {', '.join(missing)}); "
                    f"it has: {', '.join(columns) or 'no header'}"
                )
            reader.fieldnames = columns
            return columns, list(reader)
    except UnicodeDecodeError as error:
        raise DatasetError(f"{csv_path}: not UTF-8 text ({error}); save it as UTF-8 CSV") from error


def _read_manifest(csv_path: Path) -> Dataset:
    columns, rows = read_csv_rows(csv_path, ("path", "identity"))
    attribute_names = tuple(name for name in columns if name not in {"path", "identity"})
    records, seen = [], {}
    for line_number, row in enumerate(rows, start=2):
        relative, identity = (row.get("path") or "").strip(), (row.get("identity") or "").strip()
        if not relative or not identity:
            raise DatasetError(
                f"{csv_path}, line {line_number}: empty 'path' or 'identity'; fill it in or delete the row"
            )
        path = _absolute(csv_path.parent / relative)
        real = path.resolve()  # two spellings or links of one file are still one image
        if real in seen:
            raise DatasetError(
                f"{csv_path}, line {line_number}: {relative} is listed twice (first on line {seen[real]}); "
                "each image must appear once"
            )
        seen[real] = line_number
        attributes = {name: (row.get(name) or "").strip() for name in attribute_names}
        records.append(ImageRecord(path, _nfc(identity), attributes))
    return Dataset(csv_path.parent, "manifest", tuple(records), (), attribute_names)


def load_dataset(source: str | Path, layout: Layout = "auto") -> Dataset:
    """Find the images of a dataset folder or manifest CSV and their identities.

    With ``layout="auto"`` a folder holding images both directly and in subfolders raises `DatasetError`: choose
    ``"flat"`` or ``"folders"`` (``--layout``); the files that layout does not read are listed in ``skipped``.

    >>> dataset = load_dataset("ROC用")  # doctest: +SKIP
    >>> dataset.layout, dataset.n_images, dataset.n_identities  # doctest: +SKIP
    ('flat', 300, 61)
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise DatasetError(f"{source}: no such file or folder; check the path")
    source = _absolute(source)
    if source.is_file():
        if layout not in {"auto", "manifest"}:
            raise DatasetError(f"{source}: a file can only be read as a manifest CSV, not as layout '{layout}'")
        dataset = _read_manifest(source)
    elif layout == "manifest" or (layout == "auto" and (source / MANIFEST_NAME).is_file()):
        manifest = source / MANIFEST_NAME
        if not manifest.is_file():
            raise DatasetError(f"{source}: --layout manifest needs {MANIFEST_NAME} in the folder, or pass the CSV")
        dataset = _read_manifest(manifest)
    else:
        dataset = _read_folder(source, layout)
    if not dataset.records:
        found = f"; {len(dataset.skipped)} other files were set aside" if dataset.skipped else ""
        raise DatasetError(f"{source}: no images found (layout {dataset.layout}){found}; point faceval at face images")
    return dataset


def combine_datasets(datasets: Sequence[Dataset], group_attribute: str = "group") -> Dataset:
    """Join several datasets into one, each record tagged with its dataset's folder name as ``group_attribute``.

    The name is the one the user gave the folder (a symbolic link keeps its own name). Identities are qualified by
    the group (``young_women/Alice``) so that two folders reusing a name stay apart. An image reached through two
    sources (a folder given twice, once through a link, or one inside another) is refused rather than counted twice.
    """
    if len(datasets) == 1:
        return datasets[0]
    names = [_nfc(dataset.root.name) for dataset in datasets]
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise DatasetError(f"several dataset folders are named {', '.join(duplicates)}; rename one so groups differ")
    _refuse_shared_images(datasets, names)
    records, skipped, attribute_names = [], [], [group_attribute]
    for name, dataset in zip(names, datasets, strict=True):
        for attribute in dataset.attribute_names:
            if attribute not in attribute_names:
                attribute_names.append(attribute)
        for record in dataset.records:
            attributes = {**record.attributes, group_attribute: name}
            records.append(ImageRecord(record.path, f"{name}/{record.identity}", attributes))
        skipped.extend(dataset.skipped)
    common_root = Path(*_common_parts([dataset.root for dataset in datasets]))
    return Dataset(
        common_root,
        "+".join(sorted({d.layout for d in datasets})),
        tuple(records),
        tuple(skipped),
        tuple(attribute_names),
    )


def _refuse_shared_images(datasets: Sequence[Dataset], names: Sequence[str]) -> None:
    # Links keep their own names, so one folder given under two names is no longer caught as a duplicate name.
    first_group: dict[Path, str] = {}
    for name, dataset in zip(names, datasets, strict=True):
        for record in dataset.records:
            other = first_group.setdefault(record.path.resolve(), name)
            if other != name:
                raise DatasetError(
                    f"{record.path} belongs to two sources, {other} and {name} (one folder given twice, through a "
                    "link or inside another); give each image through one source only"
                )


def _common_parts(paths: Sequence[Path]) -> tuple[str, ...]:
    parts = paths[0].parts
    for path in paths[1:]:
        length = 0
        for mine, theirs in zip(parts, path.parts, strict=False):
            if mine != theirs:
                break
            length += 1
        parts = parts[:length]
    return parts or (Path(paths[0].anchor).as_posix(),)


def csv_records(
    source: Path, required: Sequence[str], optional: Sequence[str], error: type[DatasetError]
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, {column: stripped cell})`` for each non-empty row of a UTF-8 CSV whose header holds the
    ``required`` columns; a missing column, a row of the wrong length or an empty cell raises ``error`` naming the
    file, the line and what was expected."""
    with open(source, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in required if name not in header]
        if missing:
            expected = ",".join(required) + "".join(f"[,{name}]" for name in optional)
            raise error(
                f"{source}, line 1: expected a header with the columns {expected} (missing {', '.join(missing)}); "
                f"got {','.join(header) or 'an empty line'}"
            )
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise error(
                    f"{source}, line {reader.line_num}: expected {len(header)} comma-separated fields "
                    f"({','.join(header)}), got {len(row)}"
                )
            values = {name: cell.strip() for name, cell in zip(header, row, strict=True)}
            empty = [name for name in (*required, *optional) if name in values and not values[name]]
            if empty:
                raise error(f"{source}, line {reader.line_num}: {' and '.join(empty)} must not be empty")
            yield reader.line_num, values
