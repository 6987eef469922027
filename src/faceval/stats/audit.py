"""The dataset audit: what in a labelled face set makes its figures untrustworthy, found before they are trusted.

- **Exact duplicates**: files with the same bytes (sha256, the embedding store's key). A byte-identical pair
  filed under two identities is an impostor pair at distance 0.
- **Near duplicates**: the same photo re-encoded or resized: an embedding similarity above
  ``near_duplicate_threshold``, a 64-bit perceptual hash (DCT pHash, ``imagehash``) within ``hash_bits`` bits, and
  standardised 64x64 grey thumbnails whose 95th-percentile absolute difference is at most
  ``max_pixel_difference``. All three must hold: lab sets (JAFFE, AT&T) hold photos of one sitting whose hashes
  and embeddings are as close as a re-encoded copy's, and only the pixels tell a new expression from a copy.
- **The same person under two names**: identities ``a`` and ``b`` whose mean cross similarity is nearly as high as
  their own: ``closeness = (cross(a, b) - impostor) / (min(within(a), within(b)) - impostor)``, where
  ``impostor`` is the mean over every different-identity pair; 1 means the two are as alike as each with itself.
- **Probably mislabelled images**: an image whose mean similarity to another identity's images exceeds the mean
  to its own identity's other images; ``margin`` is the difference (score units, larger = more alike).
- **Several faces** in one image (the largest is embedded) and **failures** grouped by reason.

Means are taken over all pairs in row blocks of the score matrix (`faceval.models.scoring.pair_scores_block`), never
holding all pairs at once. Scores follow the project's convention (larger = more alike); every figure meant for
people is converted to the model's units.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image

from faceval.atomic import write_csv, write_json
from faceval.models.extraction import EmbeddingSet
from faceval.models.scoring import Similarity, identity_codes, pair_scores_block
from faceval.sources.datasets import Dataset, read_csv_rows
from faceval.sources.hashing import sha256_file
from faceval.sources.images import ImageLoadError, load_rgb

# Near-duplicate confirmation in each model's units when the user gives none: far above any genuine pair of
# different photos for the models faceval ships (dlib: distance; SFace/ArcFace: cosine).
DEFAULT_NEAR_DUPLICATE_THRESHOLD = {Similarity.EUCLIDEAN: 0.3, Similarity.COSINE: 0.8}
AUDIT_CSV_HEADER = ("path", "identity", "issue", "group", "related", "detail", "exclude")


@dataclass(frozen=True)
class AuditOptions:
    """Thresholds of the audit (see the module docstring); ``near_duplicate_threshold`` is in model units."""

    hash_bits: int = 6
    max_pixel_difference: float = 0.35
    near_duplicate_threshold: float | None = None
    same_person_closeness: float = 0.8
    suspect_margin: float = 0.0
    block_rows: int = 512


@dataclass(frozen=True)
class DuplicateGroup:
    """Files showing one photo: ``exact`` (same bytes) or ``near`` (re-encoded, resized, cropped)."""

    kind: str
    paths: tuple[str, ...]
    identities: tuple[str, ...]

    @property
    def cross_identity(self) -> bool:
        return len(set(self.identities)) > 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "paths": list(self.paths),
            "identities": list(self.identities),
            "cross_identity": self.cross_identity,
        }

    def excluded(self) -> tuple[str, ...]:
        """The copies to leave out: all but the first within one identity; every copy across identities (whose
        photo it is cannot be told)."""
        return self.paths if self.cross_identity else self.paths[1:]


@dataclass(frozen=True)
class SamePerson:
    """Two identities that are probably one person; means in model units."""

    identities: tuple[str, str]
    closeness: float
    cross_mean: float
    within_means: tuple[float, float]
    impostor_mean: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "identities": list(self.identities), "within_means": list(self.within_means)}


@dataclass(frozen=True)
class SuspectLabel:
    """An image more like another identity than its own; means in model units, ``margin`` in score units."""

    path: str
    identity: str
    closest_identity: str
    margin: float
    own_mean: float
    closest_mean: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MultiFace:
    """An image in which the detector found several faces; ``box`` is the one embedded (the largest)."""

    path: str
    identity: str
    faces_found: int
    box: tuple[int, int, int, int] | None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "box": list(self.box) if self.box else None}


@dataclass(frozen=True)
class FailureGroup:
    """The images one reason kept from being embedded."""

    reason: str
    paths: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "paths": list(self.paths)}


@dataclass(frozen=True)
class Audit:
    """Every finding of one audit, with what it was run on."""

    model: str
    similarity: Similarity
    n_images: int
    n_embedded: int
    options: AuditOptions
    duplicates: tuple[DuplicateGroup, ...] = ()
    same_person: tuple[SamePerson, ...] = ()
    suspect_labels: tuple[SuspectLabel, ...] = ()
    multi_face: tuple[MultiFace, ...] = ()
    failures: tuple[FailureGroup, ...] = ()
    identities_of: dict[str, str] = field(default_factory=dict, repr=False)

    def rows(self) -> list[tuple[str, str, str, str, str, str, str]]:
        """``audit.csv``: one row per flagged image and issue; ``exclude`` is the suggested action (yes/no)."""
        rows = []
        for number, group in enumerate(self.duplicates, 1):
            leave_out = set(group.excluded())
            for path, identity in zip(group.paths, group.identities, strict=True):
                related = " | ".join(p for p in group.paths if p != path)
                scope = "across identities" if group.cross_identity else "within one identity"
                rows.append((path, identity, f"{group.kind}_duplicate", f"{group.kind}-{number}", related, scope,
                             "yes" if path in leave_out else "no"))  # fmt: skip
        for number, pair in enumerate(self.same_person, 1):
            for identity, other in (pair.identities, pair.identities[::-1]):
                detail = f"closeness {pair.closeness:.2f}; merge the labels if they are one person"
                paths = [path for path, owner in self.identities_of.items() if owner == identity]
                rows.extend((path, identity, "same_person", f"same-{number}", other, detail, "no") for path in paths)
        for suspect in self.suspect_labels:
            # Judged by the evaluated model's own embeddings: leaving these out by default would drop exactly the
            # images that model gets wrong and flatter it. A person checks them and sets exclude=yes.
            detail = f"margin {suspect.margin:.4f}; check the label (judged by the model being evaluated)"
            rows.append((suspect.path, suspect.identity, "suspect_label", "", suspect.closest_identity, detail, "no"))
        for face in self.multi_face:
            detail = f"{face.faces_found} faces; the largest was used, box {face.box}"
            rows.append((face.path, face.identity, "multi_face", "", "", detail, "no"))
        for failure in self.failures:
            rows.extend((path, self.identities_of.get(path, ""), "failure", "", "", failure.reason, "no")
                        for path in failure.paths)  # fmt: skip
        return rows

    def to_dict(self) -> dict[str, Any]:
        """``audit.json``."""
        return {
            "model": self.model,
            "similarity": self.similarity.value,
            "units": self.similarity.model_units,
            "n_images": self.n_images,
            "n_embedded": self.n_embedded,
            "options": asdict(self.options),
            "n_flagged_images": len({row[0] for row in self.rows() if row[2] != "failure"}),
            "duplicates": [group.to_dict() for group in self.duplicates],
            "same_person": [pair.to_dict() for pair in self.same_person],
            "suspect_labels": [suspect.to_dict() for suspect in self.suspect_labels],
            "multi_face": [face.to_dict() for face in self.multi_face],
            "failures": [failure.to_dict() for failure in self.failures],
        }


def exact_duplicate_groups(
    paths: Sequence[str], identities: Sequence[str], digests: Sequence[str | None]
) -> list[DuplicateGroup]:
    """Groups of paths with the same sha256 (None: unreadable, never a duplicate).

    >>> groups = exact_duplicate_groups(["a", "b", "c"], ["x", "y", "x"], ["1", "1", "2"])
    >>> [(group.paths, group.cross_identity) for group in groups]
    [(('a', 'b'), True)]
    """
    by_digest: dict[str, list[int]] = defaultdict(list)
    for index, digest in enumerate(digests):
        if digest is not None:
            by_digest[digest].append(index)
    return [
        DuplicateGroup("exact", tuple(paths[i] for i in members), tuple(identities[i] for i in members))
        for members in by_digest.values()
        if len(members) > 1
    ]


@dataclass(frozen=True)
class _Look:
    """How an image looks, for near-duplicate checks: its pHash and a standardised 64x64 grey thumbnail."""

    phash: imagehash.ImageHash
    thumbnail: np.ndarray


def _look(path: str | Path) -> _Look | None:
    """The image as faceval reads it (EXIF orientation applied); None when it cannot be read."""
    try:
        image = Image.fromarray(load_rgb(path))
    except ImageLoadError:
        return None
    grey = np.asarray(image.convert("L").resize((64, 64), Image.Resampling.BOX), dtype=np.float64)
    return _Look(imagehash.phash(image), (grey - grey.mean()) / (grey.std() + 1e-9))


def _pixel_difference(first: _Look, second: _Look) -> float:
    """95th percentile of the absolute difference of the standardised thumbnails: re-encoding and resizing leave
    small noise everywhere; another photo of the same sitting (a new expression, a turned head) differs a lot
    somewhere."""
    return float(np.quantile(np.abs(first.thumbnail - second.thumbnail), 0.95))


@dataclass(frozen=True)
class _Similarities:
    """What one pass over all pairs leaves: identity-by-identity score sums, each image's nearest identities, and
    the pairs close enough to be near duplicates."""

    identity_sums: np.ndarray
    identity_sizes: np.ndarray
    own_mean: np.ndarray
    ranked_others: np.ndarray
    ranked_means: np.ndarray
    close_pairs: list[tuple[int, int]]


def _scan_pairs(
    vectors: np.ndarray, codes: np.ndarray, similarity: Similarity, close_score: float, block_rows: int
) -> _Similarities:
    from scipy import sparse  # imported where used: commands that audit nothing skip its import

    n, n_identities = len(vectors), int(codes.max()) + 1
    membership = sparse.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, n_identities))
    sizes = np.bincount(codes, minlength=n_identities).astype(np.float64)
    identity_sums = np.zeros((n_identities, n_identities))
    own_mean = np.full(n, np.nan)
    keep = min(3, n_identities - 1)
    ranked_others = np.zeros((n, keep), dtype=np.int64)
    ranked_means = np.full((n, keep), -np.inf)
    close_pairs = []
    for start in range(0, n, block_rows):
        rows = np.arange(start, min(start + block_rows, n))
        scores = pair_scores_block(vectors[rows], vectors, similarity)
        scores[np.arange(len(rows)), rows] = 0.0  # an image is not compared with itself
        first, second = np.nonzero(scores >= close_score)
        close_pairs.extend((int(rows[i]), int(j)) for i, j in zip(first, second, strict=True) if rows[i] < j)
        per_identity = np.asarray((membership.T @ scores.T).T)  # (rows, identities) score sums
        identity_sums += np.asarray(membership[rows].T @ per_identity)
        own = codes[rows]
        own_count = sizes[own] - 1
        with np.errstate(invalid="ignore", divide="ignore"):
            own_mean[rows] = np.where(own_count > 0, per_identity[np.arange(len(rows)), own] / own_count, np.nan)
        means = per_identity / sizes[None, :]
        means[np.arange(len(rows)), own] = -np.inf
        if keep:
            order = np.argsort(-means, axis=1)[:, :keep]
            ranked_others[rows] = order
            ranked_means[rows] = np.take_along_axis(means, order, axis=1)
    return _Similarities(identity_sums, sizes, own_mean, ranked_others, ranked_means, close_pairs)


def _same_person(
    found: _Similarities, names: Sequence[str], similarity: Similarity, min_closeness: float
) -> list[SamePerson]:
    sums, sizes = found.identity_sums, found.identity_sizes
    pairs_within = sizes * (sizes - 1)  # ordered pairs: each unordered pair was summed twice
    cross_total = sums.sum() - np.trace(sums)
    cross_count = sizes.sum() ** 2 - (sizes**2).sum()
    if cross_count == 0:
        return []
    impostor = cross_total / cross_count
    with np.errstate(invalid="ignore", divide="ignore"):
        within = np.where(pairs_within > 0, np.diag(sums) / pairs_within, np.nan)
        cross = sums / np.outer(sizes, sizes)
    found_pairs = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            floor = min(within[a], within[b])
            if not np.isfinite(floor) or floor <= impostor:
                continue
            closeness = (cross[a, b] - impostor) / (floor - impostor)
            if closeness >= min_closeness:
                found_pairs.append(
                    SamePerson(
                        (names[a], names[b]),
                        float(closeness),
                        float(similarity.to_model_units(cross[a, b])),
                        (float(similarity.to_model_units(within[a])), float(similarity.to_model_units(within[b]))),
                        float(similarity.to_model_units(impostor)),
                    )
                )
    return sorted(found_pairs, key=lambda pair: -pair.closeness)


def _suspects(
    found: _Similarities,
    codes: np.ndarray,
    names: Sequence[str],
    paths: Sequence[str],
    partners: set[tuple[int, int]],
    similarity: Similarity,
    min_margin: float,
) -> list[SuspectLabel]:
    suspects = []
    for image in np.flatnonzero(np.isfinite(found.own_mean)):
        own = int(codes[image])
        # Another name for the same person is reported as such, not as a mislabel of each of its images.
        choices = [
            (int(other), float(mean))
            for other, mean in zip(found.ranked_others[image], found.ranked_means[image], strict=True)
            if (min(own, other), max(own, other)) not in partners and np.isfinite(mean)
        ]
        if not choices:
            continue
        other, mean = choices[0]
        margin = mean - float(found.own_mean[image])
        if margin > min_margin:
            suspects.append(
                SuspectLabel(
                    paths[image],
                    names[own],
                    names[other],
                    margin,
                    float(similarity.to_model_units(found.own_mean[image])),
                    float(similarity.to_model_units(mean)),
                )
            )
    return sorted(suspects, key=lambda suspect: -suspect.margin)


def _near_duplicates(
    close_pairs: Iterable[tuple[int, int]],
    files: Sequence[Path],
    paths: Sequence[str],
    identities: Sequence[str],
    digests: Sequence[str | None],
    options: AuditOptions,
) -> list[DuplicateGroup]:
    """Union of the embedding-close pairs whose perceptual hashes and pixels agree (byte-identical pairs are exact
    ones)."""
    looks: dict[int, _Look | None] = {}
    parent: dict[int, int] = {}

    def root(index: int) -> int:
        while parent.setdefault(index, index) != index:
            index = parent[index]
        return index

    for first, second in close_pairs:
        if digests[first] is not None and digests[first] == digests[second]:
            continue
        for index in (first, second):
            if index not in looks:
                looks[index] = _look(files[index])
        a, b = looks[first], looks[second]
        if a is None or b is None or a.phash - b.phash > options.hash_bits:
            continue
        if _pixel_difference(a, b) > options.max_pixel_difference:
            continue
        parent[root(first)] = root(second)
    members: dict[int, list[int]] = defaultdict(list)
    for index in parent:
        members[root(index)].append(index)
    groups = [sorted(group) for group in members.values() if len(group) > 1]
    return [
        DuplicateGroup("near", tuple(paths[i] for i in group), tuple(identities[i] for i in group))
        for group in sorted(groups)
    ]


def audit_embeddings(dataset: Dataset, embeddings: EmbeddingSet, options: AuditOptions | None = None) -> Audit:
    """Audit ``dataset`` with one model's embeddings (`faceval.models.extraction.EmbeddingSet`, in the dataset's
    order)."""
    options = options or AuditOptions()
    similarity = embeddings.similarity
    paths = [dataset.relative_path(record) for record in dataset.records]
    identities = [record.identity for record in dataset.records]
    files = [record.path for record in dataset.records]
    digests = []
    for record in dataset.records:
        try:
            digests.append(sha256_file(record.path))
        except OSError:
            digests.append(None)  # unreadable: its failure is reported with the others
    duplicates = exact_duplicate_groups(paths, identities, digests)
    embedded = np.flatnonzero(embeddings.embedded)
    same_person: list[SamePerson] = []
    suspects: list[SuspectLabel] = []
    if len(embedded) >= 2:
        labels = [identities[i] for i in embedded]
        codes = identity_codes(labels)
        names = sorted(set(labels))
        threshold = options.near_duplicate_threshold
        if threshold is None:
            threshold = DEFAULT_NEAR_DUPLICATE_THRESHOLD[similarity]
        found = _scan_pairs(
            embeddings.vectors(embedded), codes, similarity, similarity.from_model_units(threshold), options.block_rows
        )
        close = [(int(embedded[a]), int(embedded[b])) for a, b in found.close_pairs]
        duplicates += _near_duplicates(close, files, paths, identities, digests, options)
        same_person = _same_person(found, names, similarity, options.same_person_closeness)
        index_of = {name: code for code, name in enumerate(names)}
        partners = {tuple(sorted((index_of[pair.identities[0]], index_of[pair.identities[1]]))) for pair in same_person}
        suspects = _suspects(
            found, codes, names, [paths[i] for i in embedded], partners, similarity, options.suspect_margin
        )
    multi_face = [
        MultiFace(paths[i], identities[i], result.detection.faces_found, result.detection.box)
        for i, result in enumerate(embeddings.results)
        if result.ok and result.detection is not None and result.detection.faces_found > 1
    ]
    by_reason: dict[str, list[str]] = defaultdict(list)
    for path, result in zip(paths, embeddings.results, strict=True):
        if not result.ok:
            by_reason[str(result.failure)].append(path)
    failures = [
        FailureGroup(reason, tuple(items)) for reason, items in sorted(by_reason.items(), key=lambda x: -len(x[1]))
    ]
    return Audit(
        embeddings.model,
        similarity,
        dataset.n_images,
        len(embedded),
        options,
        tuple(duplicates),
        tuple(same_person),
        tuple(suspects),
        tuple(multi_face),
        tuple(failures),
        dict(zip(paths, identities, strict=True)),
    )


def write_audit(out_dir: str | Path, audit: Audit) -> dict[str, Any]:
    """``audit.json`` and ``audit.csv`` in ``out_dir``; returns the JSON document."""
    out = Path(out_dir)
    document = audit.to_dict()
    write_json(out / "audit.json", document)
    write_csv(out / "audit.csv", AUDIT_CSV_HEADER, audit.rows())
    return document


def paths_to_exclude(audit_csv: str | Path) -> set[str]:
    """The paths an ``audit.csv`` marks ``exclude = yes`` (edit the column to change the choice); a CSV without
    that column excludes every path it lists."""
    columns, rows = read_csv_rows(Path(audit_csv), ["path"])
    if "exclude" not in columns:
        return {row["path"] for row in rows}
    return {row["path"] for row in rows if row["exclude"].strip().lower() in {"yes", "true", "1"}}


def duplicate_paths_to_exclude(audit: Audit) -> set[str]:
    """``--exclude-duplicates``: the extra copies of every duplicate group (`DuplicateGroup.excluded`)."""
    return {path for group in audit.duplicates for path in group.excluded()}


def audit_summary_lines(document: dict[str, Any]) -> list[str]:
    """The terminal summary of an ``audit.json`` document."""
    duplicates = document["duplicates"]
    lines = [
        f"audit ({document['model']}): {document['n_flagged_images']} of {document['n_images']} images flagged",
        f"  duplicate groups: {sum(g['kind'] == 'exact' for g in duplicates)} exact, "
        f"{sum(g['kind'] == 'near' for g in duplicates)} near, "
        f"{sum(g['cross_identity'] for g in duplicates)} of them across identities",
    ]
    lines += [
        f"  same person? {pair['identities'][0]} / {pair['identities'][1]} (closeness {pair['closeness']:.2f})"
        for pair in document["same_person"]
    ]
    lines.append(f"  probably mislabelled: {len(document['suspect_labels'])} images")
    lines.append(f"  several faces: {len(document['multi_face'])} images")
    lines += [f"  failed: {len(f['paths'])} images: {f['reason']}" for f in document["failures"]]
    return lines
