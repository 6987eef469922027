"""Templates (IJB-style 1:1): several images of one person, from one or more media, compared as one feature.

A templates CSV (header ``path,template_id[,media_id]``, paths relative to the dataset root) groups images into
templates. Each template's feature is built as the IJB-B/C evaluations build it: every image's feature
L2-normalised, averaged within each media (a video, a photo), the media averages summed, the sum normalised.
Without ``media_id`` each image is its own media.

`template_view` turns a dataset and its embeddings into a dataset whose "images" are templates, so that every
figure, the groups, the bootstrap and pair lists (``--template-pairs``: ``template_a,template_b[,same]``) apply
to templates unchanged. A template whose images all failed (or are missing) is a failed template with its reason;
all images of a template must show one identity and fall in one group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceval.models.embedders import EmbeddingResult
from faceval.models.extraction import EmbeddingSet
from faceval.models.scoring import Similarity
from faceval.sources.datasets import Dataset, DatasetError, ImageRecord, csv_records


class TemplateError(DatasetError):
    """A templates file that cannot be used: the file, the line or template, and what was expected."""


@dataclass(frozen=True)
class TemplateList:
    """The rows of a templates file, in file order."""

    source: Path
    paths: tuple[str, ...]
    template_ids: tuple[str, ...]
    media_ids: tuple[str, ...]
    lines: tuple[int, ...]

    @property
    def keys(self) -> set[str]:
        return set(self.paths)


def read_templates(path: str | Path) -> TemplateList:
    """Read a ``path,template_id[,media_id]`` CSV; a malformed line names its number and what was expected."""
    source = Path(path)
    if not source.is_file():
        raise TemplateError(f"{source}: templates file not found")
    paths, templates, media, lines = [], [], [], []
    for number, values in csv_records(source, ("path", "template_id"), ("media_id",), TemplateError):
        paths.append(values["path"])
        templates.append(values["template_id"])
        # Without a media column each image is its own media.
        media.append(values.get("media_id", f"{values['template_id']}\0{number}"))
        lines.append(number)
    if not paths:
        raise TemplateError(f"{source}: no templates listed")
    return TemplateList(source, tuple(paths), tuple(templates), tuple(media), tuple(lines))


def template_feature(features: np.ndarray, media: Sequence[str]) -> np.ndarray:
    """IJB template feature: rows L2-normalised, averaged per media, media averages summed, then normalised.

    >>> template_feature(np.array([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0]]), ["a", "b", "b"]).round(4).tolist()
    [0.7071, 0.7071]
    """
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    names, codes = np.unique(np.asarray(media, dtype=str), return_inverse=True)
    sums = np.zeros((names.size, unit.shape[1]))
    np.add.at(sums, codes.reshape(-1), unit)
    total = (sums / np.bincount(codes.reshape(-1))[:, None]).sum(axis=0)
    return total / np.linalg.norm(total)


def _single(values: set[str], what: str, template: str, source: Path) -> str:
    if len(values) > 1:
        raise TemplateError(
            f"{source}: template {template!r} mixes {what} values {', '.join(sorted(values))}; all images of a "
            f"template must have one {what}"
        )
    return next(iter(values))


def template_view(
    dataset: Dataset,
    embedding_sets: Sequence[EmbeddingSet],
    templates: TemplateList,
    groups: np.ndarray | None = None,
) -> tuple[Dataset, list[EmbeddingSet], np.ndarray | None, dict[str, Any]]:
    """The dataset, embeddings and groups with templates in place of images, plus a summary of the templates.

    A template record's path is ``root/template_id`` (so a template pair list names template ids); a listed image
    that is not in the dataset is counted and left out of its template.
    """
    index_of = {dataset.relative_path(record): index for index, record in enumerate(dataset.records)}
    members: dict[str, list[tuple[int, str]]] = {}
    missing: dict[str, int] = {}
    for path, template, media in zip(templates.paths, templates.template_ids, templates.media_ids, strict=True):
        members.setdefault(template, [])
        if path in index_of:
            members[template].append((index_of[path], media))
        else:
            missing[template] = missing.get(template, 0) + 1
    records, template_groups = [], []
    for template, images in members.items():
        # A failed image of an embeddings file has no identity ("").
        identities = {dataset.records[index].identity for index, _ in images} - {""}
        identity = _single(identities, "identity", template, templates.source) if identities else ""
        first = dataset.records[images[0][0]] if images else None
        records.append(ImageRecord(dataset.root / template, identity, first.attributes if first else {}))
        if groups is not None:
            group_names = {str(groups[index]) for index, _ in images}
            template_groups.append(_single(group_names, "group", template, templates.source) if images else "")
    view = Dataset(dataset.root, f"templates({dataset.layout})", tuple(records), (), dataset.attribute_names)
    sets = []
    for embeddings in embedding_sets:
        results = []
        for template, images in members.items():
            ok = [(index, media) for index, media in images if embeddings.results[index].ok]
            if ok:
                features = embeddings.vectors([index for index, _ in ok])
                results.append(EmbeddingResult(template_feature(features, [media for _, media in ok])))
            else:
                results.append(EmbeddingResult(None, failure=(
                    f"no image of the template has a vector ({len(images)} failed, {missing.get(template, 0)} "
                    "not in the dataset)"
                )))  # fmt: skip
        description = {**embeddings.description, "templates": str(templates.source)}
        if embeddings.similarity is Similarity.EUCLIDEAN:
            description["units"] = "distance between L2-normalised templates"
        sets.append(EmbeddingSet(embeddings.model, embeddings.similarity, description, tuple(results)))
    sizes = np.array([len(images) for images in members.values()])
    summary = {
        "file": str(templates.source),
        "n_templates": len(members),
        "n_images_listed": len(templates.paths),
        "n_images_not_in_dataset": sum(missing.values()),
        "images_per_template": {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())},
    }
    return view, sets, (np.array(template_groups, dtype=object) if groups is not None else None), summary
