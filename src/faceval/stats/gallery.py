"""Gallery and probe roles for 1:N identification: given (a manifest ``role`` column, an ``.npz`` ``roles``
array) or generated (seeded): ``enroll`` images per identity into the gallery, a ``nonmated`` share of the
identities kept out of it, and distractor images that are enrolled but never searched.

Every check runs on the dataset's records, before any image is embedded: a role that is neither ``gallery`` nor
``probe``, no gallery, no probe, or an ``enroll`` larger than an identity's images is a `DatasetError` that names
the rows or identities and the fix. The roles are written to ``roles.csv`` (`write_roles_csv`), a manifest that
repeats the run exactly (``faceval identify --manifest roles.csv``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceval.atomic import write_csv
from faceval.errors import InputError
from faceval.sources.datasets import Dataset, DatasetError, ImageRecord

GALLERY = "gallery"
PROBE = "probe"
ROLE_COLUMN = "role"
# Identities of distractor images are prefixed so that they can never match a probe's identity.
DISTRACTOR_PREFIX = "distractor/"
DEFAULT_ENROLL = 1


@dataclass(frozen=True)
class RoleOptions:
    """How roles are generated when the data does not give them: ``enroll`` gallery images per identity (None:
    `DEFAULT_ENROLL`, or the given roles), a ``nonmated`` share of identities searched but never enrolled."""

    enroll: int | None = None
    nonmated: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.enroll is not None and self.enroll < 1:
            raise InputError(f"--enroll takes the number of gallery images per identity (>= 1), got {self.enroll}")
        if self.nonmated is not None and not 0.0 <= self.nonmated < 1.0:
            raise InputError(
                f"--nonmated takes the share of identities kept out of the gallery in [0, 1), got {self.nonmated}"
            )

    @property
    def generates(self) -> bool:
        """True when the user asked for generated roles (``--enroll`` or ``--nonmated``)."""
        return self.enroll is not None or self.nonmated is not None


@dataclass(frozen=True)
class Roles:
    """The role of every record (``gallery`` or ``probe``) and how they were decided (``given`` or a description
    of the generation, for the report)."""

    roles: tuple[str, ...]
    source: str

    @property
    def gallery(self) -> np.ndarray:
        """Boolean mask: gallery records."""
        return np.array([role == GALLERY for role in self.roles], dtype=bool)

    @property
    def probe(self) -> np.ndarray:
        """Boolean mask: probe records."""
        return np.array([role == PROBE for role in self.roles], dtype=bool)


def _shown(items: Sequence[str], limit: int = 5) -> str:
    listed = ", ".join(repr(item) for item in items[:limit])
    return listed + (f" and {len(items) - limit} more" if len(items) > limit else "")


def given_roles(values: Sequence[str], where: str, first_row: int = 2) -> tuple[str, ...]:
    """Validated roles from a manifest column or an ``.npz`` array: ``gallery`` or ``probe`` (case and spaces
    ignored). Rows are numbered from ``first_row`` (2: the first data line of a CSV under its header).

    >>> given_roles([" Gallery", "probe"], "people.csv")
    ('gallery', 'probe')
    """
    roles = tuple(str(value).strip().lower() for value in values)
    bad = [index for index, role in enumerate(roles) if role not in (GALLERY, PROBE)]
    if bad:
        rows = ", ".join(f"{index + first_row} ({values[index]!r})" for index in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DatasetError(
            f"{where}: role must be 'gallery' or 'probe'; rows {rows}{more} are neither. Fix those values, or drop "
            "the role column and let --enroll K choose the gallery"
        )
    return roles


def generate_roles(identities: Sequence[str], options: RoleOptions) -> tuple[str, ...]:
    """Seeded roles: a ``nonmated`` share of the identities (rounded) is kept out of the gallery (all their images
    are probes); each other identity gets ``enroll`` random images in the gallery and the rest as mated probes.

    An identity with fewer than ``enroll`` images is an error naming it; one with exactly ``enroll`` is enrolled
    without probes (a gallery entry no probe of its own searches for).

    >>> generate_roles(["a", "a", "b", "b"], RoleOptions(enroll=1, seed=0))
    ('gallery', 'probe', 'gallery', 'probe')
    """
    enroll = options.enroll or DEFAULT_ENROLL
    images: dict[str, list[int]] = defaultdict(list)
    for index, identity in enumerate(identities):
        images[identity].append(index)
    names = sorted(images)
    short = [f"{name} ({len(images[name])})" for name in names if len(images[name]) < enroll]
    if short:
        raise DatasetError(
            f"--enroll {enroll} needs {enroll} images of every identity; {len(short)} have fewer: {_shown(short)}. "
            "Lower --enroll, or remove those identities"
        )
    rng = np.random.default_rng(options.seed)
    n_nonmated = round((options.nonmated or 0.0) * len(names))
    kept_out = {names[index] for index in rng.permutation(len(names))[:n_nonmated]}
    roles = [PROBE] * len(identities)
    for name in names:
        if name in kept_out:
            continue
        for index in rng.permutation(images[name])[:enroll]:
            roles[int(index)] = GALLERY
    return tuple(roles)


def check_roles(roles: Sequence[str], identities: Sequence[str], where: str) -> None:
    """A gallery and probes must both exist; say how to get them when they do not."""
    if GALLERY not in roles:
        raise DatasetError(
            f"{where}: no gallery image (every image is a probe); mark some rows 'gallery' or use --enroll K"
        )
    if PROBE not in roles:
        examples = _shown(sorted(set(identities)), 3)
        raise DatasetError(
            f"{where}: no probe to search with (every image is in the gallery, e.g. {examples}); "
            "mark some rows 'probe', lower --enroll, or add --nonmated F"
        )


def assign_roles(dataset: Dataset, options: RoleOptions, given: Sequence[str] | None = None) -> Roles:
    """The roles of a dataset's records: ``given`` (one per record), else its manifest's ``role`` column, else
    generated with ``options``; checked (`check_roles`). Given roles and ``--enroll``/``--nonmated`` together are
    an error: which one should win is the user's choice."""
    identities = [record.identity for record in dataset.records]
    where = str(dataset.root)
    if given is None and ROLE_COLUMN in dataset.attribute_names:
        given = [record.attributes.get(ROLE_COLUMN, "") for record in dataset.records]
        where = f"{dataset.root} (manifest column '{ROLE_COLUMN}')"
    if given is not None:
        if options.generates:
            raise DatasetError(
                f"{where}: the data gives each image's role, and --enroll/--nonmated would choose them again; "
                "drop one of the two"
            )
        roles, source = given_roles(given, where), "given"
    else:
        roles = generate_roles(identities, options)
        source = (
            f"generated: --enroll {options.enroll or DEFAULT_ENROLL} --nonmated {options.nonmated or 0:g} "
            f"--seed {options.seed}"
        )
    check_roles(roles, identities, where)
    return Roles(roles, source)


def with_distractors(dataset: Dataset, roles: Roles, distractors: Dataset) -> tuple[Dataset, Roles]:
    """Append distractor images as gallery records of their own identities (prefixed `DISTRACTOR_PREFIX`), never
    searched: they only make the gallery larger, as MegaFace's distractors do."""
    records = tuple(
        ImageRecord(record.path, f"{DISTRACTOR_PREFIX}{record.identity}", record.attributes)
        for record in distractors.records
    )
    combined = Dataset(
        dataset.root,
        dataset.layout,
        dataset.records + records,
        dataset.skipped + distractors.skipped,
        dataset.attribute_names,
    )
    return combined, Roles(roles.roles + (GALLERY,) * len(records), f"{roles.source}; distractors: {distractors.root}")


def write_roles_csv(path: str | Path, dataset: Dataset, roles: Roles) -> None:
    """``path,identity,role`` and the dataset's attribute columns, one row per record, paths absolute: a manifest
    that repeats the same gallery and probes (``faceval identify --manifest roles.csv``)."""
    attributes = [name for name in dataset.attribute_names if name != ROLE_COLUMN]
    write_csv(
        path,
        ["path", "identity", ROLE_COLUMN, *attributes],
        (
            [
                record.path.absolute().as_posix(),  # not resolve(): a linked folder keeps its name
                record.identity,
                role,
                *(record.attributes.get(a, "") for a in attributes),
            ]
            for record, role in zip(dataset.records, roles.roles, strict=True)
        ),
    )
