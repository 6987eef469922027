"""End to end 1:N identification, as ``faceval identify`` runs it: dataset -> roles -> embeddings -> exact search
-> figures -> report. Everything that can be checked (output folder, roles, groups, models, thresholds) is
checked before any image is embedded.

Models compared side by side search with the same probes against the same gallery: the images every model
embedded. A gallery image a model cannot embed leaves its identity with fewer gallery images (none: its probes
become non-mated searches, as for a person whose enrolment failed); each model's failures are reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceval.errors import InputError
from faceval.models.embedders import EmbeddingResult
from faceval.models.extraction import EmbeddingSet
from faceval.models.scoring import Similarity, identity_codes
from faceval.pipeline import (
    SourcesRequest,
    embed_dataset,
    file_similarity,
    load_embeddings_file,
    load_sources,
    model_specs,
)
from faceval.sources.datasets import Dataset, ImageRecord, load_dataset
from faceval.stats.gallery import GALLERY, PROBE, RoleOptions, Roles, assign_roles, with_distractors
from faceval.stats.groups import group_labels
from faceval.stats.identification import DEFAULT_TARGET_FPIR, FnirAtFpir, Identification, identify_figures
from faceval.stats.search import (
    DEFAULT_CANDIDATES,
    DEFAULT_MAX_RANK,
    FUSIONS,
    Gallery,
    SearchResult,
    build_gallery,
    search,
)


@dataclass(frozen=True)
class SearchOptions:
    """How searches are run and judged: ``rank`` is R of FNIR(T, R); ``thresholds`` are in each model's units,
    by model name (``""``: every model); without one the global threshold reaches ``target_fpir``."""

    fusion: str = "max"
    rank: int = 1
    max_rank: int = DEFAULT_MAX_RANK
    n_candidates: int = DEFAULT_CANDIDATES
    target_fpir: float = DEFAULT_TARGET_FPIR
    thresholds: Mapping[str, float] = field(default_factory=dict)
    n_resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise InputError(f"--fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if not 1 <= self.rank <= self.max_rank:
            raise InputError(f"--rank must be between 1 and --max-rank ({self.max_rank}), got {self.rank}")
        if not 0.0 < self.target_fpir < 1.0:
            raise InputError(f"--target-fpir must be in (0, 1), got {self.target_fpir}")


@dataclass(frozen=True)
class IdentifyRequest(SourcesRequest):
    """What ``faceval identify SOURCES...`` was asked to do."""

    roles: RoleOptions = field(default_factory=RoleOptions)
    distractors: str | Path | None = None
    group_by: Sequence[str] = ()
    attribute_csv: str | Path | None = None
    search: SearchOptions = field(default_factory=SearchOptions)


@dataclass(frozen=True, eq=False)
class ModelSearch:
    """One model's searches and figures. ``n_failed`` counts its failures over the dataset's records: by role
    (``gallery``, ``probe``) and, among the probes, ``mated`` / ``nonmated`` (whether their identity is enrolled)."""

    name: str
    similarity: Similarity
    description: dict[str, Any]
    n_failed: dict[str, int]
    gallery: Gallery
    result: SearchResult
    figures: Identification

    @property
    def fnir_at_fpir(self) -> dict[str, FnirAtFpir | None]:
        """FNIR at FPIR ``"1e-1"``, ``"1e-2"``, ``"1e-3"`` with each threshold in the model's units (``figures``
        keeps them in score units); None without mated or without non-mated searches."""
        return {
            key: None
            if point is None
            else dataclasses.replace(point, threshold=self.similarity.to_model_units(point.threshold))
            for key, point in self.figures.fnir_at_fpir.items()
        }

    @property
    def global_threshold(self) -> float | None:
        """The one threshold of the per-group figures and the gallery-size curve, in the model's units."""
        threshold = self.figures.global_threshold
        return None if threshold is None else self.similarity.to_model_units(threshold)


@dataclass(eq=False)
class IdentificationRun:
    """A 1:N identification: the dataset, its roles, and each model's searches and figures (``models[name]``, a
    `ModelSearch`). `save` writes ``identification.json``, ``candidates.csv``, ``roles.csv``, the plots and
    ``report.html``; `to_dict` gives the ``identification.json`` document."""

    dataset: Dataset
    roles: Roles
    probes: np.ndarray
    gallery_images: np.ndarray
    groups: np.ndarray | None
    group_by: tuple[str, ...]
    options: SearchOptions
    models: dict[str, ModelSearch]
    notes: list[str]

    def to_dict(self, command: Iterable[str] | None = None) -> dict[str, Any]:
        """The ``identification.json`` document (strict JSON values, thresholds in each model's units)."""
        from faceval.output.identify_report import identification_document

        return identification_document(self, command)

    def save(
        self, out_dir: str | Path, command: Iterable[str] | None = None, *, html: bool = True, lang: str = "en"
    ) -> Path:
        """Write ``identification.json``, ``candidates.csv``, ``roles.csv``, the plots and ``report.html`` (``lang``
        en | ja; ``html=False`` to skip it) into ``out_dir``. Returns the path of ``identification.json``."""
        from faceval.output.html_report import LANGUAGES, write_page
        from faceval.output.identify_html import render_identification_report
        from faceval.output.identify_report import write_identification

        if lang not in LANGUAGES:  # before anything is written
            raise InputError(f"lang must be one of {', '.join(LANGUAGES)}, got {lang!r}")
        document = write_identification(out_dir, self, command)
        write_page(out_dir, render_identification_report(out_dir, document, lang) if html else None)
        return Path(out_dir) / "identification.json"


def _check_thresholds(thresholds: Mapping[str, float], models: Iterable[str]) -> None:
    unknown = sorted(set(thresholds) - {"", *models})
    if unknown:
        raise InputError(f"--threshold names {', '.join(unknown)}, but the models are {', '.join(models)}")


def identify_embeddings(
    dataset: Dataset,
    roles: Roles,
    embedding_sets: Sequence[EmbeddingSet],
    options: SearchOptions,
    groups: np.ndarray | None = None,
    group_by: Sequence[str] = (),
    progress: bool = False,
) -> IdentificationRun:
    """Search every probe against the gallery with each model, on the images every model embedded."""
    names = [embeddings.model for embeddings in embedding_sets]
    _check_thresholds(options.thresholds, names)
    everyone = np.logical_and.reduce([embeddings.embedded for embeddings in embedding_sets])
    gallery_images = np.flatnonzero(everyone & roles.gallery)
    probes = np.flatnonzero(everyone & roles.probe)
    notes: list[str] = []
    if gallery_images.size == 0 or probes.size == 0:
        missing = "gallery image" if gallery_images.size == 0 else "probe"
        raise InputError(f"no {missing} was embedded by every model; see the failures with faceval evaluate")
    if len(embedding_sets) > 1:
        notes.append(
            f"every model searches with the {probes.size} probes against the {gallery_images.size} gallery "
            "images that all models embedded"
        )
    identities = [record.identity for record in dataset.records]
    probe_identities = [identities[index] for index in probes]
    enrolled = {identities[index] for index in gallery_images}
    meant = {identity for identity, role in zip(identities, roles.roles, strict=True) if role == GALLERY}
    lost = sorted(meant - enrolled)
    if lost:
        notes.append(
            f"{len(lost)} identities lost every gallery image to failures ({', '.join(lost[:5])}"
            f"{' ...' if len(lost) > 5 else ''}); their probes count as non-mated searches"
        )
    probe_codes = identity_codes(probe_identities)
    probe_groups = None if groups is None else groups[probes]
    models = {}
    for embeddings in embedding_sets:
        similarity = embeddings.similarity
        gallery = build_gallery(
            embeddings.vectors(gallery_images),
            [identities[i] for i in gallery_images],
            similarity,
            options.fusion,
            options.seed,
        )
        position = gallery.index()
        mates = np.array([position.get(identity, -1) for identity in probe_identities], dtype=np.int64)
        result = search(
            embeddings.vectors(probes),
            mates,
            gallery,
            similarity,
            options.max_rank,
            options.n_candidates,
            progress,
            embeddings.model,
        )
        given = options.thresholds.get(embeddings.model, options.thresholds.get(""))
        figures = identify_figures(
            result,
            probe_codes,
            probe_groups,
            rank=options.rank,
            target_fpir=options.target_fpir,
            threshold=None if given is None else similarity.from_model_units(given),
            n_resamples=options.n_resamples,
            seed=options.seed,
        )
        failed = ~embeddings.embedded
        role_of = np.array(roles.roles)
        n_failed = {role: int((failed & (role_of == role)).sum()) for role in (GALLERY, PROBE)}
        failed_probe_mated = [identities[index] in position for index in np.flatnonzero(failed & (role_of == PROBE))]
        n_failed["mated"] = sum(failed_probe_mated)
        n_failed["nonmated"] = len(failed_probe_mated) - n_failed["mated"]
        models[embeddings.model] = ModelSearch(
            embeddings.model, similarity, embeddings.description, n_failed, gallery, result, figures
        )
        if any(n_failed.values()):
            notes.append(
                f"{embeddings.model}: {n_failed[GALLERY]} gallery and {n_failed[PROBE]} probe images without a vector "
                "(no face found, unreadable) take no part in the searches; fnir_with_failures and fpir_with_failures "
                "in identification.json count the failed probes as misses and as no candidate"
            )
        if figures.n_nonmated == 0:
            notes.append(
                f"{embeddings.model}: no non-mated search, so no FPIR: keep some identities out of the "
                "gallery (--nonmated 0.3) or add probes of people not enrolled"
            )
    return IdentificationRun(dataset, roles, probes, gallery_images, groups, tuple(group_by), options, models, notes)


def run_identification(request: IdentifyRequest) -> IdentificationRun:
    """``faceval identify SOURCES...``: checks, roles, embeddings (through the store), searches and figures;
    writes nothing (``request.out_dir`` is unused: `IdentificationRun.save` writes)."""
    dataset = load_sources(request.sources, request.layout)
    several_folders = len(request.sources) > 1 and request.attribute_csv is None
    group_by = tuple(request.group_by) or (("group",) if several_folders else ())
    groups = group_labels(dataset, None, group_by or None, request.attribute_csv)
    roles = assign_roles(dataset, request.roles)
    if request.distractors is not None:
        extra = load_dataset(request.distractors)
        dataset, roles = with_distractors(dataset, roles, extra)
        if groups is not None:
            groups = np.concatenate((groups, np.full(extra.n_images, "distractor", dtype=object)))
    specs = model_specs(request.models, request.dlib_options, request.spec_file, request.embedding.jobs)
    embedders = [spec.build() for spec in specs]
    _check_thresholds(request.search.thresholds, [embedder.name for embedder in embedders])
    embedding_sets = embed_dataset(dataset, embedders, request.embedding)
    return identify_embeddings(
        dataset, roles, embedding_sets, request.search, groups, group_by, progress=request.embedding.progress
    )


def identify_vectors(
    vectors: Any,
    labels: Sequence[Any],
    similarity: Similarity | str,
    options: SearchOptions,
    roles: RoleOptions,
    given_roles: Sequence[str] | None = None,
    groups: Sequence[Any] | None = None,
    *,
    name: str = "embeddings",
    root: str | Path = ".",
    paths: Sequence[str] | None = None,
    description: Mapping[str, Any] | None = None,
    source: str = "vectors",
    progress: bool = False,
) -> IdentificationRun:
    """Searches with vectors made elsewhere, one row per image and ``labels`` its identity: roles from
    ``given_roles`` (``gallery`` / ``probe`` per row) or generated by ``roles``, ``groups`` one label per row.
    ``source`` names the data in error messages."""
    vectors = np.asarray(vectors, dtype=np.float64)
    labels = [str(label) for label in labels]
    if vectors.ndim != 2 or len(labels) != len(vectors):
        raise InputError(f"{source}: vectors must be 2-D with one row per label, got {vectors.shape} for "
                         f"{len(labels)} labels")  # fmt: skip
    for key, values in (("roles", given_roles), ("groups", groups)):
        if values is not None and len(values) != len(labels):
            raise InputError(f"{source}: '{key}' has {len(values)} values for {len(labels)} labels; one per row")
    root = Path(root)
    paths = [f"row {index}" for index in range(len(labels))] if paths is None else list(paths)
    records = tuple(ImageRecord(root / str(p), label) for p, label in zip(paths, labels, strict=True))
    dataset = Dataset(root, "embeddings", records)
    assigned = assign_roles(dataset, roles, None if given_roles is None else [str(role) for role in given_roles])
    group_array = None if groups is None else np.array([str(group) for group in groups], dtype=object)
    similarity = Similarity(similarity)
    description = dict(description or {"name": name, "kind": "embeddings", "similarity": similarity.value})
    embeddings = EmbeddingSet(name, similarity, description, tuple(EmbeddingResult(v) for v in vectors))
    group_by = ("groups",) if group_array is not None else ()
    return identify_embeddings(dataset, assigned, [embeddings], options, group_array, group_by, progress)


def identify_from_embeddings_file(
    path: str | Path, metric: str | None, roles: RoleOptions, options: SearchOptions, progress: bool = False
) -> IdentificationRun:
    """``faceval identify --embeddings EMB.npz``: roles from its ``roles`` array or generated, groups from its
    ``groups`` array; the model is named after the file. Failed images listed in the file are only counted."""
    path = Path(path)
    labels, vectors, extras = load_embeddings_file(path)
    similarity = file_similarity(path, metric, extras)
    run = identify_vectors(
        vectors,
        labels,
        similarity,
        options,
        roles,
        extras.get("roles"),
        extras.get("groups"),
        name=path.stem,
        root=path.parent,
        paths=extras.get("paths"),
        description={"name": path.stem, "kind": "embeddings", "file": str(path), "similarity": similarity.value},
        source=str(path),
        progress=progress,
    )
    n_failed = len(extras.get("failed_paths", ()))
    if n_failed:
        run.notes.append(f"{path}: {n_failed} images without a vector are listed in the file; they take no part")
    return run
