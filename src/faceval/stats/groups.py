"""Demographic groups: per-group figures, one global threshold, cross-group FMR, FDR, identity-bootstrap intervals.

Definitions follow ``docs/metrics.md`` ("Groups", "Uncertainty"). Each scored image has a group label (a
dataset folder, a combination of manifest columns, or identity attributes: `group_labels`). A pair belongs to
group g when both its images are in g; pairs across groups are impostors (unless one identity spans groups)
that feed the cross-group FMR matrix, the global threshold and the overall figures.

- Per group: images, identities, genuine and impostor pairs and their ratio, failures (FTE), AUC, EER, TAR at
  the target FMR, and the group's own best-F1 and EER thresholds.
- One global threshold ``tau`` from all impostor pairs at the target FMR (`faceval.stats.metrics.tar_at_far`): per
  group FNMR and FMR at it, the cross-group FMR matrix, max/geometric-mean ratios and the Fairness Discrepancy
  Rate; the same at a user's threshold and at thresholds chosen in an earlier run. Without genuine or without
  impostor pairs there is no global threshold, and no rates at it (None), rather than those of +inf.
- 95 % percentile intervals from the identity bootstrap of `faceval.stats.bootstrap`, identities resampled within
  their group (an identity whose images span groups, e.g. grouped by a per-image attribute such as an age band,
  with the group holding most of its images; a group with a single such identity is noted, since its draw
  never varies); rates at a threshold keep the threshold fixed (the question is what that setting does to each
  group), so their intervals show the sampling error of the rates, not of the threshold.
- ``calibrate``: thresholds chosen on a development split of identities (within each group), rates reported
  on the other identities, so the threshold is not judged on the data that chose it.

This module computes the statistics as typed results (`GroupReport`, `GroupFigures`, `OperatingPoint`);
`faceval.output.group_presentation` turns them into ``metrics.json`` entries, terminal text, ``groups.csv`` and figures.
Thresholds are kept in score units (accept ``s >= tau``) and converted with `Similarity.threshold_for_report` only
there.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceval.errors import InputError
from faceval.models.scoring import PairChunk, Similarity, pair_offsets, paired_scores
from faceval.sources.datasets import Dataset, DatasetError, ImageRecord, read_csv_rows
from faceval.stats.accumulators import ChunkFeed, HeldPairs, HeldScores, ModelFeed, PairFeed, side_by_side
from faceval.stats.bootstrap import (
    CONFIDENCE,
    DEFAULT_RESAMPLES,
    MAX_BOOTSTRAP_PAIRS,
    Interval,
    ResampledFigures,
    SortedPairs,
    identity_multiplicities,
    identity_strata,
    percentile_interval,
    stratum_sizes,
)
from faceval.stats.influence import IdentityInfluences, IdentityStatistics, impostor_bin_edges
from faceval.stats.lattice import EXACT_MAX_PAIRS, Lattice, LatticeCounts, lattice_for, score_counts
from faceval.stats.metrics import (
    ScoreCounts,
    ScoreTable,
    best_f1,
    equal_error_rate,
    excluded_share,
    failure_adjusted_rates,
    sweep_at,
    tar_at_far,
    threshold_sweep,
    verification_summary,
)

MISSING = "(missing)"
# The attribute `faceval.sources.datasets.combine_datasets` gives each record: its dataset folder, the prefix of its
# identity.
_FOLDER_ATTRIBUTE = "group"
ALL = "all"
ALL_PAIRS = "(all pairs)"
# Groups whose genuine:impostor ratios differ by more than this factor get the note that precision and F1 are
# not comparable across them.
_RATIO_TOLERANCE = 1.1
_SPLITS = 3  # pair split codes: 0 both development (or no calibration), 1 both held out, 2 one of each
# The pairs whose impostor scores place the streaming intervals' bins (`IdentityStatistics`): a state (all pairs, or
# one group's) with up to this many pairs places them from all its impostors; a larger one from this many pairs
# drawn at random among its own (`_sampled_edges`), so that the edges do not depend on the order of the pairs.
SAMPLE_IMPOSTORS = 1 << 22


def _read_identity_attributes(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Columns and rows (by identity) of an identity-attribute CSV with an ``identity`` column."""
    columns, rows = read_csv_rows(path, ("identity",))
    table: dict[str, dict[str, str]] = {}
    for line_number, row in enumerate(rows, start=2):
        identity = (row.get("identity") or "").strip()
        values = {name: (row.get(name) or "").strip() for name in columns if name != "identity"}
        if identity in table and table[identity] != values:
            raise DatasetError(f"{path}, line {line_number}: identity {identity!r} is listed twice with other values")
        table[identity] = values
    return [name for name in columns if name != "identity"], table


def _identity_attributes(
    records: Sequence[ImageRecord], table: Mapping[str, dict[str, str]], path: Path
) -> list[dict[str, str]]:
    """Each record's row of an identity-attribute CSV: by its identity, or, for an identity that
    `faceval.sources.datasets.combine_datasets` qualified with its folder (``folder/name`` with attribute ``group``
    equal to ``folder``), by its plain name. Raises `DatasetError` naming identities the CSV does not list."""
    values: list[dict[str, str]] = []
    unlisted: dict[str, None] = {}
    for record in records:
        row = table.get(record.identity)
        if row is None:
            folder, qualified, name = record.identity.partition("/")
            if qualified and record.attributes.get(_FOLDER_ATTRIBUTE) == folder:
                row = table.get(name)
        if row is None:
            unlisted[record.identity] = None
            row = {}
        values.append(row)
    if unlisted:
        identities = len({record.identity for record in records})
        shown = ", ".join(repr(name) for name in list(unlisted)[:5])
        more = f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else ""
        raise DatasetError(
            f"{path}: {len(unlisted)} of {identities} identities are not listed: {shown}{more}; add a row for each "
            "(blank values put it in '(missing)'), spelled as the dataset names them"
        )
    return values


def group_labels(
    dataset: Dataset,
    indices: Sequence[int] | np.ndarray | None = None,
    group_by: Sequence[str] | None = None,
    attribute_csv: str | Path | None = None,
) -> np.ndarray | None:
    """The group of each record (all records, or those at ``indices``): the values of the ``group_by`` columns,
    joined with ``", "`` when there are several (each combination is a group); blank values read ``(missing)``.

    Columns come from the dataset's attributes (manifest columns; ``group`` for several dataset folders, see
    `faceval.sources.datasets.combine_datasets`) or, with ``attribute_csv``, from a CSV of ``identity,<columns...>``
    (all its columns when ``group_by`` is None). Without either, None: no groups. A column that does not exist
    raises `DatasetError` listing the columns there are.

    The CSV must list every identity of the records (blank values are allowed and read ``(missing)``); one it
    does not list raises `DatasetError` naming a few, rather than putting them silently in ``(missing)``. With
    several dataset folders identities are qualified by their folder (``young_women/Alice``): the CSV may list
    them so, or by their plain name (``Alice``), which then applies to that name in every folder.

    >>> from faceval.sources.datasets import ImageRecord
    >>> records = (ImageRecord(Path("a.png"), "amy", {"gender": "F", "age": "young"}),
    ...            ImageRecord(Path("b.png"), "bob", {"gender": "M", "age": ""}))
    >>> dataset = Dataset(Path("."), "manifest", records, (), ("gender", "age"))
    >>> group_labels(dataset, group_by=["gender", "age"]).tolist()
    ['F, young', 'M, (missing)']
    """
    records = dataset.records if indices is None else [dataset.records[int(index)] for index in indices]
    if attribute_csv is not None:
        path = Path(attribute_csv)
        columns, table = _read_identity_attributes(path)
        source = f"{path} (identity attributes)"
        chosen = list(group_by) if group_by else columns
        values = _identity_attributes(records, table, path)
    elif group_by:
        columns, source, chosen = list(dataset.attribute_names), "the dataset", list(group_by)
        values = [record.attributes for record in records]
    else:
        return None
    missing = [name for name in chosen if name not in columns]
    if missing or not chosen:
        available = ", ".join(columns) or (
            "none (group with a manifest's attribute columns, several dataset folders, or an identity-attribute CSV)"
        )
        wanted = ", ".join(repr(name) for name in missing) or "chosen"
        raise DatasetError(f"no column {wanted} in {source}; available columns: {available}")
    labels = [", ".join(value.get(name) or MISSING for name in chosen) for value in values]
    return np.array(labels, dtype=object)


def group_failures(
    labels: Sequence[str] | np.ndarray, embedded: Sequence[bool] | np.ndarray
) -> dict[str, tuple[int, int]]:
    """Per group, ``(images the model failed on, images)`` over every record of the dataset (for the FTE).

    >>> group_failures(["a", "a", "b"], [True, False, True])
    {'a': (1, 2), 'b': (0, 1)}
    """
    labels = np.asarray(labels, dtype=object)
    embedded = np.asarray(embedded, dtype=bool)
    return {
        str(name): (int((~embedded[labels == name]).sum()), int((labels == name).sum()))
        for name in sorted(set(labels.tolist()))
    }


@dataclass(frozen=True)
class ChosenThresholds:
    """Thresholds chosen in an earlier run (model units): the global one and each group's best-F1 and EER ones."""

    source: str
    global_threshold: float | None
    groups: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def load_thresholds(path: str | Path, model: str) -> ChosenThresholds:
    """Read the thresholds of ``model`` from an earlier run's ``metrics.json`` (``--threshold-from``)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a readable metrics.json ({error})") from error
    models = document.get("models", {})
    if model not in models:
        raise InputError(f"{path}: no model {model!r}; it has: {', '.join(models) or 'none'}")
    entry = models[model]
    if "global_threshold" not in entry:
        raise InputError(f"{path}: model {model!r} has no global_threshold (that run had no group analysis)")
    groups = {}
    for name, figures in (entry.get("groups") or {}).items():
        chosen = {}
        if figures.get("best_f1"):
            chosen["best_f1"] = figures["best_f1"]["threshold"]
        if figures.get("eer_threshold") is not None:
            chosen["eer"] = figures["eer_threshold"]
        groups[name] = chosen
    return ChosenThresholds(str(path), entry["global_threshold"]["threshold"], groups)


@dataclass(frozen=True)
class GroupOptions:
    """What the group analysis does: ``threshold`` is in the model's units (e.g. dlib's distance 0.6);
    ``calibrate`` the share of identities used to choose thresholds; ``max_bootstrap_pairs`` the largest set
    for which intervals are computed (memory and time grow with pairs x resamples); ``exact`` True keeps one
    threshold per distinct score, False counts on a lattice (`faceval.stats.lattice`), None chooses by the number of
    pairs."""

    target_fmr: float = 1e-3
    threshold: float | None = None
    calibrate: float | None = None
    threshold_from: ChosenThresholds | None = None
    n_resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    max_bootstrap_pairs: int = MAX_BOOTSTRAP_PAIRS
    fdr_alpha: float = 0.5
    exact: bool | None = None
    intervals: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.target_fmr < 1.0:
            raise ValueError(f"target FMR must be in (0, 1), got {self.target_fmr}")
        if self.calibrate is not None and not 0.0 < self.calibrate < 1.0:
            raise ValueError(f"--calibrate takes the development share of identities in (0, 1), got {self.calibrate}")
        if self.n_resamples < 0:
            raise ValueError(f"n_resamples must be >= 0, got {self.n_resamples}")
        if self.intervals not in (None, "bootstrap", "streaming", "none"):
            raise ValueError(f"intervals must be bootstrap, streaming or none, got {self.intervals!r}")
        if not 0.0 <= self.fdr_alpha <= 1.0:
            raise ValueError(f"fdr_alpha must be in [0, 1], got {self.fdr_alpha}")


@dataclass(frozen=True)
class GroupFigures:
    """One group's (or all pairs') figures: counts, the `verification_summary` (None without both kinds of pair),
    the bootstrap intervals, and flags saying what cannot be trusted."""

    name: str
    n_images: int
    n_identities: int
    n_failed: int | None
    n_dataset_images: int | None
    table: ScoreTable
    summary: dict[str, Any] | None
    intervals: dict[str, Interval | None]
    flags: tuple[str, ...]

    @property
    def fte(self) -> float | None:
        """Share of the group's dataset images the model could not embed."""
        return self.n_failed / self.n_dataset_images if self.n_dataset_images else None

    def with_failures(self, fnmr: float | None, fmr: float | None) -> dict[str, float | None]:
        """The group's rates with failures counted against the system (`failure_adjusted_rates`), over the share
        of its images missing from the scored set; None where a rate or the share is unknown."""
        share = excluded_share(self.n_images, self.n_dataset_images)
        if share is None or fnmr is None or fmr is None:
            return {"fnmr_with_failures": None, "fmr_with_failures": None}
        adjusted = failure_adjusted_rates(fnmr, fmr, share)
        return dict(zip(("fnmr_with_failures", "fmr_with_failures"), adjusted, strict=True))


@dataclass(frozen=True)
class OperatingPoint:
    """Rates at one fixed threshold (score units): per group FNMR and within-group FMR with intervals, all pairs,
    the cross-group FMR matrix (NaN where there are no impostor pairs), and the parity summaries.

    ``threshold`` None: there is no such threshold (the global one needs genuine and impostor pairs), and every
    rate is None."""

    threshold: float | None
    fnmr: dict[str, float | None]
    fmr: dict[str, float | None]
    fnmr_ci: dict[str, Interval | None]
    fmr_ci: dict[str, Interval | None]
    fmr_matrix: np.ndarray
    impostor_matrix: np.ndarray
    fnmr_max_over_geomean: float | None
    fmr_max_over_geomean: float | None
    fdr: float | None
    fdr_ci: Interval | None


@dataclass(frozen=True)
class GroupReport:
    """Everything the group analysis found for one model (its ``metrics.json`` entries:
    `faceval.output.group_presentation.group_report_dict`).

    ``development_identities`` are the identity codes that chose the thresholds under ``calibrate``.
    """

    similarity: Similarity
    group_by: tuple[str, ...]
    target_fmr: float
    fdr_alpha: float
    groups: dict[str, GroupFigures]
    overall: GroupFigures
    global_point: OperatingPoint
    global_figure: dict[str, Any]
    user_point: OperatingPoint | None
    applied_point: OperatingPoint | None
    applied: dict[str, Any] | None
    calibration: dict[str, Any] | None
    development_identities: np.ndarray | None
    ranking: dict[str, list[str]]
    ratios_differ: bool
    bootstrap: dict[str, Any]
    notes: tuple[str, ...]
    # Per-identity influences of the streaming intervals (all pairs and each group), for paired comparisons.
    influences: dict[str, IdentityInfluences] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.groups)


def _merged(parts: Iterable[ScoreCounts | LatticeCounts], merged: ScoreCounts | LatticeCounts) -> ScoreTable:
    for part in parts:
        merged.merge(part)
    return merged.compute()


def _accepted(table: ScoreTable, threshold: float) -> tuple[int, int]:
    """Genuine and impostor pairs with score >= threshold: the counting of `faceval.stats.metrics.sweep_at`, which
    cannot serve here because it (and its `Sweep`) refuses a table without both kinds of pair, and cross-group tables
    have impostors only, a group of one identity genuine pairs only."""
    level = int(np.searchsorted(-table.thresholds, -threshold, side="right"))
    if level == 0:
        return 0, 0
    return int(table.genuine_accepted[level - 1]), int(table.impostor_accepted[level - 1])


def _rates(table: ScoreTable, threshold: float) -> tuple[float | None, float | None]:
    """FNMR and FMR at a threshold, None where the table has no pair of that kind."""
    genuine, impostor = _accepted(table, threshold)
    fnmr = (table.n_genuine - genuine) / table.n_genuine if table.n_genuine else None
    fmr = impostor / table.n_impostor if table.n_impostor else None
    return fnmr, fmr


def _max_over_geomean(values: Iterable[float | None]) -> float | None:
    """max / geometric mean (1 = parity); None without values, or with a zero: the geometric mean is then 0 and the
    ratio undefined (x/0, or 0/0 when every value is 0)."""
    defined = np.array([value for value in values if value is not None], dtype=np.float64)
    if defined.size == 0 or np.any(defined <= 0):
        return None
    return float(defined.max() / np.exp(np.log(defined).mean()))


def _ratio_text(genuine_per_impostor: float) -> str:
    """A genuine:impostor ratio as ``1:x`` with three significant digits, so that ratios more than 1 % apart read
    differently.

    >>> _ratio_text(1 / 1.5), _ratio_text(1 / 2.5), _ratio_text(1 / 1234.5), _ratio_text(2.0)
    ('1:1.5', '1:2.5', '1:1,230', '1:0.5')
    """
    impostors = 1.0 / genuine_per_impostor
    text = np.format_float_positional(impostors, precision=3, unique=False, fractional=False, trim="-")
    whole, point, fraction = text.partition(".")
    return f"1:{int(whole):,}{point}{fraction}"


def _discrepancy(fmr: np.ndarray, fnmr: np.ndarray, alpha: float) -> np.ndarray:
    """Fairness Discrepancy Rate per row of per-group rates (NaN where a rate is missing)."""
    fmr_spread = fmr.max(axis=-1) - fmr.min(axis=-1)
    fnmr_spread = fnmr.max(axis=-1) - fnmr.min(axis=-1)
    return 1.0 - (alpha * fmr_spread + (1.0 - alpha) * fnmr_spread)


def _count(
    counts: ScoreCounts | LatticeCounts, scores: np.ndarray, genuine: np.ndarray, cells: np.ndarray | None
) -> None:
    if cells is None:
        counts.update(scores, genuine)
    else:
        assert isinstance(counts, LatticeCounts)
        counts.add_cells(cells, genuine)


@dataclass
class _Pairs:
    """Every scored pair, streamed once into exact per-class counts (the pairs themselves, where the bootstrap
    needs them, are held once for all models by `faceval.stats.accumulators.HeldPairs`)."""

    n_groups: int
    new_counts: Callable[[], ScoreCounts | LatticeCounts] = ScoreCounts
    counts: dict[int, ScoreCounts | LatticeCounts] = field(default_factory=dict)
    _tables: dict[tuple[int | None, int | None, int | None], ScoreTable] = field(default_factory=dict)

    def key(self, low: int, high: int, split: int) -> int:
        return (low * self.n_groups + high) * _SPLITS + split

    def add(
        self,
        chunk: PairChunk,
        codes: np.ndarray,
        splits: np.ndarray,
        uniform: bool = False,
        cells: np.ndarray | None = None,
    ) -> None:
        """Count a chunk's pairs by (group pair, split) class; ``uniform``: every image is in one group and split,
        so every pair is in class 0 and needs no sorting; ``cells``: the pairs' lattice cells, placed once."""
        if uniform:
            _count(self.counts.setdefault(0, self.new_counts()), chunk.scores, chunk.genuine, cells)
            return
        first_group, second_group = codes[chunk.first], codes[chunk.second]
        first_split, second_split = splits[chunk.first], splits[chunk.second]
        split = np.where(first_split == second_split, first_split, 2)
        keys = (np.minimum(first_group, second_group) * self.n_groups + np.maximum(first_group, second_group)) * _SPLITS
        keys += split
        order = np.argsort(keys, kind="stable")
        values, starts = np.unique(keys[order], return_index=True)
        for value, start, stop in zip(values.tolist(), starts, [*starts[1:], order.size], strict=True):
            rows = order[start:stop]
            _count(
                self.counts.setdefault(value, self.new_counts()),
                chunk.scores[rows],
                chunk.genuine[rows],
                None if cells is None else cells[rows],
            )

    def merge(self, other: _Pairs) -> None:
        """Add the pairs of ``other`` (left unchanged) after this state's own, as if fed after them."""
        for key, counts in other.counts.items():
            self.counts.setdefault(key, self.new_counts()).merge(counts)
        self._tables.clear()

    def table(
        self, low: int | None = None, high: int | None = None, split: int | None = None, keep: bool = True
    ) -> ScoreTable:
        """Pairs between groups ``low <= high`` (any when None) of one split (any when None); built once when
        ``keep``, else built for one use."""
        request = (low, high, split)
        if request in self._tables:
            return self._tables[request]
        table = _merged(
            (
                counts
                for key, counts in self.counts.items()
                if (low is None or key // _SPLITS == low * self.n_groups + high)
                and (split is None or key % _SPLITS == split)
            ),
            self.new_counts(),
        )
        if keep:
            self._tables[request] = table
        return table


def _resampled(
    held: HeldScores,
    identities: np.ndarray,
    strata: np.ndarray,
    codes: np.ndarray,
    names: list[str],
    options: GroupOptions,
    thresholds: list[float],
) -> dict[str, ResampledFigures]:
    """Bootstrap figures of all pairs and of each group's pairs, from one set of identity multiplicities drawn
    within ``strata`` (`identity_strata`), so that the figures of one resample, and the FDR built from them,
    belong together."""
    scores, first, second = held.scores, held.first, held.second
    group = codes.astype(np.int32)
    group_of_pair = np.where(group[first] == group[second], group[first], -1)
    first_identity, second_identity = identities.astype(np.intp)[first], identities.astype(np.intp)[second]
    genuine = first_identity == second_identity
    multiplicities = identity_multiplicities(strata, options.n_resamples, options.seed)
    figures = {"fars": (options.target_fmr,), "thresholds": tuple(thresholds)}
    resampled = {
        ALL_PAIRS: SortedPairs(scores, genuine, first_identity, second_identity).resampled_figures(
            multiplicities, **figures
        )
    }
    for code, name in enumerate(names):
        inside = group_of_pair == code
        if inside.all():
            # One group holds every pair: its resamples are those of all pairs, drawn from the same multiplicities.
            resampled[name] = resampled[ALL_PAIRS]
            continue
        pairs = SortedPairs(scores[inside], genuine[inside], first_identity[inside], second_identity[inside])
        resampled[name] = pairs.resampled_figures(multiplicities, **figures)
    return resampled


INTERVAL_METHODS = {
    "bootstrap": "identity bootstrap: identities resampled with replacement within each group (an identity whose "
    "images span groups within the group holding most of them), pairs rebuilt",
    "streaming": "streaming identity influences: per-identity (and, with a few hundred identities or fewer, "
    "identity-pair) counts accumulated with the pairs; replicates from the same identity multiplicities, recomputed "
    "from those counts where they suffice, else the identity bootstrap linearised (Hoeffding projections clustered "
    "by identity)",
    "none": "no intervals",
}
# Above this many pairs the automatic choice is the streaming intervals (the bootstrap holds every pair).
STREAMING_MIN_PAIRS = EXACT_MAX_PAIRS
# Below this many identities the streaming intervals are flagged: without the identity-pair table (many identities
# in all) they are first-order, and their coverage fell to 90 % at 30 identities.
STREAMING_MIN_IDENTITIES = 100


def interval_method(options: GroupOptions, n_pairs: int) -> str:
    """``bootstrap``, ``streaming`` or ``none``: the user's choice, else the bootstrap up to `STREAMING_MIN_PAIRS`
    pairs and the streaming intervals above."""
    if options.n_resamples == 0 or options.intervals == "none":
        return "none"
    if options.intervals == "bootstrap" and n_pairs > options.max_bootstrap_pairs:
        raise ValueError(
            f"--intervals bootstrap holds every pair: {n_pairs:,} pairs exceed its limit of "
            f"{options.max_bootstrap_pairs:,}; use --intervals streaming (bounded memory) or sample identities"
        )
    if options.intervals is not None:
        return options.intervals
    return "bootstrap" if n_pairs <= min(STREAMING_MIN_PAIRS, options.max_bootstrap_pairs) else "streaming"


def _chosen(options: GroupOptions, n_pairs: int) -> str:
    if options.n_resamples == 0:
        return "n_resamples is 0"
    if options.intervals is not None:
        return "chosen with --intervals"
    limit = min(STREAMING_MIN_PAIRS, options.max_bootstrap_pairs)
    return f"automatic: {n_pairs:,} pairs, the bootstrap up to {limit:,}"


def _add_identity_statistics(
    statistics: Mapping[int, IdentityStatistics],
    chunk: PairChunk,
    identities: np.ndarray,
    codes: np.ndarray,
    cells: np.ndarray | None,
) -> None:
    """Feed a chunk to the per-identity states: every pair to ``-1``, each group's own pairs to its code."""
    first, second = identities[chunk.first], identities[chunk.second]
    statistics[-1].update(chunk.scores, chunk.genuine, first, second, cells)
    if len(statistics) == 1:
        return
    first_group, second_group = codes[chunk.first], codes[chunk.second]
    within = first_group == second_group
    for code in np.unique(first_group[within]).tolist():
        rows = np.flatnonzero(within & (first_group == code))
        statistics[code].update(
            chunk.scores[rows], chunk.genuine[rows], first[rows], second[rows], None if cells is None else cells[rows]
        )


def _identity_statistics(
    codes: Iterable[int],
    n_identities: int,
    lattice: Lattice | None,
    fixed_thresholds: Sequence[float],
    edges: Mapping[int, np.ndarray],
) -> dict[int, IdentityStatistics]:
    """Fresh per-identity states by group code (``-1``: all pairs), with impostor bins placed already where
    ``edges`` holds them (`_sampled_edges`)."""
    return {code: IdentityStatistics(n_identities, lattice, fixed_thresholds, edges.get(code)) for code in codes}


def _state_sample(
    code: int, codes: np.ndarray, listed: tuple[np.ndarray, np.ndarray] | None, seed: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """`SAMPLE_IMPOSTORS` pairs drawn uniformly (with replacement) among the pairs of the per-identity state
    ``code`` (``-1``: all pairs, else those within group ``code``; of the ``listed`` pairs where a list names them),
    as image indices, or None when the state has no more pairs than that (it places its edges from all of them).
    Drawn from pair positions in a fixed enumeration (the row-major upper triangle of the state's images, or the
    list), with a generator of its own: the same sample whatever order the pairs are fed in."""
    rng = np.random.default_rng((seed, 2, code + 1))
    if listed is not None:
        first, second = listed
        if code >= 0:
            within = (codes[first] == code) & (codes[second] == code)
            first, second = first[within], second[within]
        if first.size <= SAMPLE_IMPOSTORS:
            return None
        # Sorted so that the sample's vectors are read in order.
        drawn = np.sort(rng.integers(0, first.size, SAMPLE_IMPOSTORS))
        return first[drawn], second[drawn]
    members = np.arange(codes.size) if code < 0 else np.flatnonzero(codes == code)
    if members.size * (members.size - 1) // 2 <= SAMPLE_IMPOSTORS:
        return None
    positions = np.sort(rng.integers(0, members.size * (members.size - 1) // 2, SAMPLE_IMPOSTORS))
    offsets = pair_offsets(members.size)
    rows = np.searchsorted(offsets, positions, side="right") - 1
    return members[rows], members[positions - offsets[rows] + rows + 1]


def _sampled_edges(
    state_codes: Iterable[int],
    codes: np.ndarray,
    identities: np.ndarray,
    vectors: np.ndarray,
    similarity: Similarity,
    listed: tuple[np.ndarray, np.ndarray] | None,
    lattice: Lattice | None,
    fixed_thresholds: Sequence[float],
    seed: int,
) -> dict[int, np.ndarray]:
    """The impostor bins' edges of each per-identity state with more than `SAMPLE_IMPOSTORS` pairs, placed from the
    impostors of a seeded uniform sample of its pairs (`_state_sample`), scored here from the vectors
    (`faceval.models.scoring.paired_scores`). Fixed before the pass, they do not depend on the order of the pairs,
    and every part of a pass run in parts (a Dask task, a GPU tile) counts into the same bins."""
    edges = {}
    for code in state_codes:
        sample = _state_sample(code, codes, listed, seed)
        if sample is None:
            continue
        first, second = sample
        scores = paired_scores(vectors, first, second, similarity)
        edges[code] = impostor_bin_edges(scores[identities[first] != identities[second]], fixed_thresholds, lattice)
    return edges


@dataclass
class _GroupState:
    """What `group_report` accumulates from the pairs, mergeable (in pair order) so that a `PairFeed` can fill
    parts of it anywhere: per-class counts and kept pairs (`_Pairs`), and per-identity statistics by group code."""

    pairs: _Pairs
    statistics: dict[int, IdentityStatistics]

    @classmethod
    def new(
        cls,
        n_groups: int,
        new_counts: Callable[[], ScoreCounts | LatticeCounts],
        new_statistics: Callable[[], dict[int, IdentityStatistics]] | None,
    ) -> _GroupState:
        return cls(_Pairs(n_groups, new_counts), {} if new_statistics is None else new_statistics())

    def add(
        self,
        chunk: PairChunk,
        codes: np.ndarray,
        splits: np.ndarray,
        identities: np.ndarray,
        uniform: bool,
        lattice: Lattice | None,
    ) -> None:
        # On a lattice each score is placed in its cell once, for every state that counts it.
        cells = None if lattice is None else lattice.cells(chunk.scores)
        self.pairs.add(chunk, codes, splits, uniform=uniform, cells=cells)
        if self.statistics:
            _add_identity_statistics(self.statistics, chunk, identities, codes, cells)

    def merge(self, other: _GroupState) -> None:
        """Add the pairs of ``other`` (left unchanged) after this state's own."""
        self.pairs.merge(other.pairs)
        for code, state in self.statistics.items():
            state.merge(other.statistics[code])


def _calibration_split(
    identities: np.ndarray, codes: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per identity: 0 development, 1 held out, about ``fraction`` of each group's identities (at least one of
    each where a group has two or more); and the per-image split codes."""
    strata = identity_strata(identities, codes)
    # A generator of its own, so the split does not shift the bootstrap's draws.
    rng = np.random.default_rng((seed, 1))
    split = np.ones(strata.size, dtype=np.int64)
    for stratum in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        if members.size >= 2:
            size = min(max(round(fraction * members.size), 1), members.size - 1)
            split[members[:size]] = 0
    return split, split[identities]


def _summary(table: ScoreTable, target_fmr: float) -> dict[str, Any] | None:
    if table.n_genuine == 0 or table.n_impostor == 0:
        return None
    return verification_summary(table, fars=(target_fmr,))


def _flags(n_identities: int, table: ScoreTable, target_fmr: float, n_images: int) -> list[str]:
    flags = []
    if n_images == 0:
        flags.append("no scored images: the model failed on every image of the group (see fte)")
    elif n_identities == 1:
        flags.append("one identity: no impostor pairs within the group, so no FMR, AUC or EER")
    elif table.n_impostor == 0:
        flags.append("no impostor pairs within the group")
    if n_images and table.n_genuine == 0:
        flags.append("no genuine pairs (no identity has two images): no FNMR, AUC or EER")
    needed = int(np.ceil(3.0 / target_fmr))
    if 0 < table.n_impostor < needed:
        flags.append(
            f"too few impostor pairs to measure FMR {target_fmr:g} ({table.n_impostor} < {needed}, rule of three): "
            "its FMR and TAR at that FMR are shown but not supported"
        )
    return flags


def group_report(
    chunks: Iterable[PairChunk] | PairFeed,
    groups: Sequence[str] | np.ndarray | None,
    identities: Any,
    similarity: Similarity,
    options: GroupOptions | None = None,
    failures: Mapping[str, tuple[int, int]] | None = None,
    group_by: Sequence[str] = (),
    n_pairs: int | None = None,
    vectors: np.ndarray | None = None,
) -> GroupReport:
    """Group figures of one model from its pairs (``chunks``, e.g. `faceval.models.scoring.iter_pair_chunks`, whose
    indices refer to the scored images, or a one-model `PairFeed`), each scored image's group label and identity
    code: `prepare_groups`, one pass over the pairs, `GroupPass.finish`. (`faceval.evaluation` fills the group
    states of several models in one pass.)

    ``groups`` None puts every image in one group ``all`` (intervals for the whole set). ``failures`` maps a
    group to ``(images failed, images)`` for its FTE (`group_failures`); a group whose every image failed is
    listed with its FTE and flagged. ``vectors`` (the scored images' vectors) are needed by the streaming intervals
    over more than `SAMPLE_IMPOSTORS` pairs, to place their bins from a sample of the pairs.

    >>> from faceval.models.scoring import iter_pair_chunks
    >>> rng = np.random.default_rng(0)
    >>> ids = np.repeat(np.arange(12), 4)
    >>> vectors = rng.normal(size=(12, 8))[ids] + rng.normal(scale=0.7, size=(48, 8))
    >>> labels = np.where(ids < 6, "A", "B")
    >>> options = GroupOptions(target_fmr=0.01, n_resamples=200)
    >>> report = group_report(iter_pair_chunks(vectors, ids, "cosine"), labels, ids, Similarity.COSINE, options)
    >>> sorted(report.groups), report.groups["A"].table.n_genuine, report.groups["A"].table.n_impostor
    (['A', 'B'], 36, 240)
    """
    plan = prepare_groups(groups, identities, similarity, options, failures, group_by, n_pairs, vectors)
    # A PairFeed (a Dask cluster, a GPU) fills group states wherever it runs and merges them in pair order.
    feed = chunks if isinstance(chunks, PairFeed) else ChunkFeed(chunks)
    parts = [(plan.state_factory(), ModelFeed(plan.feed))]
    if plan.holds_pairs:
        parts.append((HeldPairs, HeldPairs.add))
    states = feed.accumulate(*side_by_side(parts))
    return plan.finish(states.parts[0], states.parts[1].take(1)[0] if plan.holds_pairs else None)


@dataclass
class GroupPass:
    """The group analysis of one model around the pass over the pairs (`prepare_groups`): ``state_factory`` and
    ``feed`` fill a group state with the model's pairs (in a pass shared with other models), `finish` turns the
    merged state into the `GroupReport`. ``holds_pairs``: the bootstrap needs the model's scores of every pair,
    held by the pass (`faceval.stats.accumulators.HeldPairs`)."""

    options: GroupOptions
    similarity: Similarity
    identities: np.ndarray
    names: list[str]
    codes: np.ndarray
    n_pairs: int
    failures: Mapping[str, tuple[int, int]] | None
    group_by: tuple[str, ...]
    calibrating: bool
    identity_split: np.ndarray
    method: str
    thresholds: dict[str, float | None]
    lattice: Lattice | None
    notes: list[str]
    feed: Callable[[_GroupState, PairChunk], None]
    # Fresh per-identity states of the streaming intervals (None without them), with the impostor bins of the states
    # over `SAMPLE_IMPOSTORS` pairs placed from a sample (`_sampled_edges`).
    new_statistics: Callable[[], dict[int, IdentityStatistics]] | None

    @property
    def holds_pairs(self) -> bool:
        return self.method == "bootstrap"

    def state_factory(self) -> Callable[[], _GroupState]:
        """Makes the empty group state that the pass fills (picklable, for a pass that runs elsewhere)."""
        new_counts = functools.partial(score_counts, self.similarity, self.n_pairs, self.options.exact)
        return functools.partial(_GroupState.new, len(self.names), new_counts, self.new_statistics)

    def finish(self, state: _GroupState, held: HeldScores | None) -> GroupReport:
        """The `GroupReport` from the merged state of the pass and, where `holds_pairs`, the model's held scores."""
        return _finish(self, state, held)


def prepare_groups(
    groups: Sequence[str] | np.ndarray | None,
    identities: Any,
    similarity: Similarity,
    options: GroupOptions | None = None,
    failures: Mapping[str, tuple[int, int]] | None = None,
    group_by: Sequence[str] = (),
    n_pairs: int | None = None,
    vectors: np.ndarray | None = None,
    listed: tuple[np.ndarray, np.ndarray] | None = None,
) -> GroupPass:
    """What `group_report` needs before the pass over the pairs: groups, calibration split, interval method,
    thresholds, counting states (arguments as `group_report`; ``listed``: the two image indices of each pair when a
    pair list names the pairs, else all pairs of the images). The streaming intervals' bins are placed here from a
    seeded sample of the pairs, scored from ``vectors``, for every state over `SAMPLE_IMPOSTORS` pairs."""
    options = options or GroupOptions()
    similarity = Similarity(similarity)
    identities = np.asarray(identities)
    if identities.ndim != 1 or (identities.size and identities.dtype.kind not in "iu"):
        raise ValueError("identities must be 1-D integer codes, one per scored image (see identity_codes)")
    labels = np.full(identities.size, ALL, dtype=object) if groups is None else np.asarray(groups, dtype=object)
    if labels.shape != identities.shape:
        raise ValueError(f"groups and identities need one entry per scored image: {labels.shape}, {identities.shape}")
    names = sorted(set(map(str, labels.tolist())) | set(failures or {}))
    code_of = {name: code for code, name in enumerate(names)}
    codes = np.array([code_of[str(label)] for label in labels], dtype=np.int64)
    n_images = identities.size
    # How many pairs will come (all pairs of the images unless a pair list says fewer): it picks the counting state
    # and the intervals.
    n_pairs = n_images * (n_images - 1) // 2 if n_pairs is None else int(n_pairs)
    notes: list[str] = []

    calibrating = options.calibrate is not None
    identity_split, image_split = (
        _calibration_split(identities, codes, options.calibrate, options.seed)
        if calibrating
        else (np.zeros(0, dtype=np.int64), np.zeros(n_images, dtype=np.int64))
    )
    method = interval_method(options, n_pairs)
    notes.append(f"intervals: {INTERVAL_METHODS[method]} ({_chosen(options, n_pairs)})")
    thresholds: dict[str, float | None] = {"global": None}
    if options.threshold is not None:
        thresholds["threshold"] = float(similarity.from_model_units(options.threshold))
    if options.threshold_from is not None and options.threshold_from.global_threshold is not None:
        thresholds["applied"] = float(similarity.from_model_units(options.threshold_from.global_threshold))
    lattice = lattice_for(similarity, n_pairs, options.exact)
    new_statistics = None
    if method == "streaming":
        fixed = [value for value in thresholds.values() if value is not None]
        n_identity_codes = int(identities.max()) + 1 if identities.size else 0
        # -1: all pairs; 0..: the pairs within each group (one group of every pair needs no state of its own).
        state_codes = range(-1, len(names) if len(names) > 1 else 0)
        if n_pairs > SAMPLE_IMPOSTORS and vectors is None:
            raise ValueError(
                f"streaming intervals over {n_pairs:,} pairs (more than {SAMPLE_IMPOSTORS:,}) place their impostor "
                "bins from a sample of the pairs: pass the scored images' vectors (vectors=)"
            )
        edges = (
            {}
            if vectors is None
            else _sampled_edges(
                state_codes, codes, identities, vectors, similarity, listed, lattice, fixed, options.seed
            )
        )
        new_statistics = functools.partial(
            _identity_statistics, state_codes, n_identity_codes, lattice, fixed, edges=edges
        )
    # One group and no calibration split: every pair is of one class (group 0 with itself, split 0).
    uniform = len(names) == 1 and not calibrating
    feed = functools.partial(
        _GroupState.add, codes=codes, splits=image_split, identities=identities, uniform=uniform, lattice=lattice
    )
    return GroupPass(
        options=options,
        similarity=similarity,
        identities=identities,
        names=names,
        codes=codes,
        n_pairs=n_pairs,
        failures=failures,
        group_by=tuple(group_by),
        calibrating=calibrating,
        identity_split=identity_split,
        method=method,
        thresholds=thresholds,
        lattice=lattice,
        notes=notes,
        feed=feed,
        new_statistics=new_statistics,
    )


def _finish(plan: GroupPass, state: _GroupState, held: HeldScores | None) -> GroupReport:
    """`GroupPass.finish`: the figures, intervals and notes from the merged state."""
    options, similarity, identities, names, codes = (
        plan.options,
        plan.similarity,
        plan.identities,
        plan.names,
        plan.codes,
    )
    n_images, n_pairs, failures, group_by, method = (
        identities.size,
        plan.n_pairs,
        plan.failures,
        plan.group_by,
        plan.method,
    )
    calibrating, identity_split = plan.calibrating, plan.identity_split
    # Copies: finishing twice (or after another model's finish) starts from the same prepared values.
    thresholds, notes = dict(plan.thresholds), list(plan.notes)
    pairs, statistics = state.pairs, state.statistics

    # Point figures: each group's own pairs, and every pair.
    tables = {name: pairs.table(code, code) for code, name in enumerate(names)}
    overall_table = pairs.table()
    scorable = overall_table.n_genuine > 0 and overall_table.n_impostor > 0
    global_tar = tar_at_far(overall_table, options.target_fmr) if scorable else None
    # No global threshold without both kinds of pair: its rates are None, not those of a threshold of +inf. (A
    # threshold of +inf that tar_at_far returns, when no score is strict enough, is a real one: it accepts nothing.)
    thresholds["global"] = None if global_tar is None else global_tar.threshold
    defined_thresholds = [value for value in thresholds.values() if value is not None]

    strata = identity_strata(identities, codes)
    influences: dict[str, IdentityInfluences] = {}
    if held is not None and n_pairs:
        resampled = _resampled(held, identities, strata, codes, names, options, defined_thresholds)
    elif statistics:
        multiplicities = identity_multiplicities(strata, options.n_resamples, options.seed)
        resampled = {}
        for code, state in statistics.items():
            name = ALL_PAIRS if code < 0 else names[code]
            table = overall_table if code < 0 else tables[name]
            if table.n_genuine and table.n_impostor:
                influences[name] = state.influences(table, (options.target_fmr,), defined_thresholds)
                resampled[name] = influences[name].resampled(multiplicities)
        if len(names) == 1 and ALL_PAIRS in resampled:
            resampled[names[0]] = resampled[ALL_PAIRS]
    else:
        resampled = {}
    if influences:
        few = [
            f"{name} ({count})"
            for name, count in (
                (name, int(np.unique(identities if name == ALL_PAIRS else identities[codes == names.index(name)]).size))
                for name in influences
            )
            if count < STREAMING_MIN_IDENTITIES
        ]
        if few:
            notes.append(
                f"streaming intervals want about {STREAMING_MIN_IDENTITIES} identities or more; fewer in "
                f"{', '.join(few)}: their figures are recomputed per resample from identity-pair counts only where "
                "that table fits (a few hundred identities in all), else first-order in 1/identities (FNMR at a "
                "fixed threshold is exact either way); under about 10 identities no identity-level interval, the "
                "exact bootstrap's included, is reliable. Read those intervals with care, or use --intervals "
                "bootstrap where the pairs fit in memory (docs/metrics.md)"
            )
    if resampled:
        for code, size in stratum_sizes(strata).items():
            if size < 2:
                notes.append(
                    f"{names[code]}: a single identity is resampled in this group (an identity whose images span "
                    "groups is resampled with the group holding most of them), drawn once in every resample: "
                    "figures resting on it alone do not vary, so their intervals understate the uncertainty "
                    "(zero width where no other identity contributes)"
                )

    def intervals(name: str) -> dict[str, Interval | None]:
        if name not in resampled:
            return {"auc": None, "eer": None, "tar": None}
        figures = resampled[name]
        return {
            "auc": percentile_interval(figures.auc),
            "eer": percentile_interval(figures.eer),
            "tar": percentile_interval(figures.tar[:, 0]),
        }

    figures_by_group = {}
    for code, name in enumerate(names):
        members = codes == code
        n_identities = int(np.unique(identities[members]).size)
        failed, dataset_images = (failures or {}).get(name, (None, None))
        flags = _flags(n_identities, tables[name], options.target_fmr, int(members.sum()))
        figures_by_group[name] = GroupFigures(
            name,
            int(members.sum()),
            n_identities,
            failed,
            dataset_images,
            tables[name],
            _summary(tables[name], options.target_fmr),
            intervals(name),
            tuple(flags),
        )
    overall_failures = (
        (sum(f for f, _ in failures.values()), sum(n for _, n in failures.values())) if failures else (None, None)
    )
    overall = GroupFigures(
        ALL_PAIRS,
        n_images,
        int(np.unique(identities).size),
        overall_failures[0],
        overall_failures[1],
        overall_table,
        _summary(overall_table, options.target_fmr),
        intervals(ALL_PAIRS),
        tuple(_flags(int(np.unique(identities).size), overall_table, options.target_fmr, n_images)),
    )
    for name, result in resampled.items():
        undefined = options.n_resamples - int(np.isfinite(result.auc).sum())
        # A group holding every pair (no groups: the one group "all") has the same resamples as all pairs: said once.
        every_pair = name != ALL_PAIRS and (tables[name].n_genuine, tables[name].n_impostor) == (
            overall_table.n_genuine,
            overall_table.n_impostor,
        )
        if undefined and not every_pair and (name == ALL_PAIRS or figures_by_group[name].summary is not None):
            notes.append(
                f"{name}: {undefined} of {options.n_resamples} resamples drew no genuine or no impostor pair; "
                "its intervals come from the others (few identities: read them with care)"
            )

    points = _operating_points(pairs, names, thresholds, resampled, options.fdr_alpha)
    for rate, values in (("FNMR", points["global"].fnmr), ("FMR", points["global"].fmr)):
        defined = [name for name in names if values[name] is not None]
        zero = [name for name in defined if values[name] == 0]
        if len(defined) < 2 or not zero:
            continue
        if len(zero) == len(defined):
            notes.append(
                f"{rate} is 0 at the global threshold in every group: its max/geometric-mean ratio is 0/0, "
                "undefined (reported as None); the groups are at parity on it"
            )
        else:
            notes.append(
                f"{rate} is 0 at the global threshold in {', '.join(zero)}: the geometric mean of {rate} is then 0, "
                "so its max/geometric-mean ratio is undefined (reported as None); the FDR still compares the groups"
            )
    global_figure = {
        "fmr_reached": None if global_tar is None else global_tar.fmr,
        "n_impostor": overall_table.n_impostor,
        "supported": None if global_tar is None else global_tar.supported,
    }
    if global_tar is None:
        notes.append("no global threshold: the scored images need both genuine and impostor pairs")
    elif not np.isfinite(global_tar.threshold):
        notes.append(f"no score reaches FMR {options.target_fmr:g}: the global threshold accepts nothing")

    ratios = [t.n_genuine / t.n_impostor for t in tables.values() if t.n_genuine and t.n_impostor]
    ratios_differ = len(ratios) >= 2 and max(ratios) / min(ratios) > _RATIO_TOLERANCE
    if ratios_differ:
        notes.append(
            f"genuine:impostor ratios differ across groups (from {_ratio_text(max(ratios))} to "
            f"{_ratio_text(min(ratios))}): "
            "precision, accuracy and F1 (best_f1) are not comparable across groups; compare AUC, EER, TAR@FAR and "
            "FNMR/FMR at the global threshold, which do not depend on the ratio (group_ranking)"
        )
    for name, figures in figures_by_group.items():
        notes.extend(f"group {name}: {flag}" for flag in figures.flags)

    return GroupReport(
        similarity=similarity,
        group_by=tuple(group_by),
        target_fmr=options.target_fmr,
        fdr_alpha=options.fdr_alpha,
        groups=figures_by_group,
        overall=overall,
        global_point=points["global"],
        global_figure=global_figure,
        user_point=points.get("threshold"),
        applied_point=points.get("applied"),
        applied=None
        if options.threshold_from is None
        else {
            "source": options.threshold_from.source,
            "groups": _own_thresholds_applied(options.threshold_from, tables, similarity, names),
        },
        calibration=_calibration(pairs, names, identity_split, identities, codes, options, similarity)
        if calibrating
        else None,
        development_identities=np.flatnonzero(identity_split == 0) if calibrating else None,
        ranking=_ranking(figures_by_group, points["global"]),
        ratios_differ=bool(ratios_differ),
        bootstrap={
            "intervals": method,
            "chosen": _chosen(options, n_pairs),
            "method": INTERVAL_METHODS[method],
            "n_resamples": options.n_resamples if resampled else 0,
            "seed": options.seed,
            "confidence": CONFIDENCE,
            "interval": "percentile",
            "thresholds": "held fixed: intervals of rates at a threshold are for that fixed threshold",
        },
        notes=tuple(notes),
        influences=influences,
    )


def _operating_points(
    pairs: _Pairs,
    names: list[str],
    thresholds: Mapping[str, float | None],
    resampled: Mapping[str, ResampledFigures],
    alpha: float,
) -> dict[str, OperatingPoint]:
    """Rates at each threshold: per group, all pairs, the cross-group matrix, parity summaries and the FDR.

    A threshold of None (no global threshold) gives None rates and no intervals. ``resampled`` holds the rates at
    the other thresholds, in their order."""
    size, count = len(names), len(thresholds)
    fmr_matrix = np.full((count, size, size), np.nan)
    impostor_matrix = np.zeros((size, size), dtype=np.int64)
    fnmr: list[dict[str, float | None]] = [dict.fromkeys([*names, ALL_PAIRS]) for _ in range(count)]
    fmr: list[dict[str, float | None]] = [dict.fromkeys([*names, ALL_PAIRS]) for _ in range(count)]
    values = list(thresholds.values())
    defined_columns = [column for column, value in enumerate(values) if value is not None]
    for low in range(size):
        for high in range(low, size):
            # Cross-group tables are needed here only: built for all thresholds at once, then dropped.
            table = pairs.table(low, high, keep=low == high)
            impostor_matrix[low, high] = impostor_matrix[high, low] = table.n_impostor
            for column in defined_columns:
                group_fnmr, group_fmr = _rates(table, values[column])
                if group_fmr is not None:
                    fmr_matrix[column, low, high] = fmr_matrix[column, high, low] = group_fmr
                if low == high:
                    fnmr[column][names[low]], fmr[column][names[low]] = group_fnmr, group_fmr
    points = {}
    for column, (key, threshold) in enumerate(thresholds.items()):
        fdr = fdr_ci = None
        fnmr_ci: dict[str, Interval | None] = {}
        fmr_ci: dict[str, Interval | None] = {}
        if threshold is not None:
            fnmr[column][ALL_PAIRS], fmr[column][ALL_PAIRS] = _rates(pairs.table(), threshold)
            # The column of this threshold among those resampled (the defined ones).
            kept = defined_columns.index(column)
            fnmr_ci = {name: percentile_interval(r.fnmr[:, kept]) for name, r in resampled.items()}
            fmr_ci = {name: percentile_interval(r.fmr[:, kept]) for name, r in resampled.items()}
            defined = [name for name in names if fnmr[column][name] is not None and fmr[column][name] is not None]
            if len(defined) >= 2:
                fdr = float(
                    _discrepancy(
                        np.array([fmr[column][name] for name in defined]),
                        np.array([fnmr[column][name] for name in defined]),
                        alpha,
                    )
                )
                if resampled:
                    fdr_ci = percentile_interval(
                        _discrepancy(
                            np.stack([resampled[name].fmr[:, kept] for name in defined], axis=1),
                            np.stack([resampled[name].fnmr[:, kept] for name in defined], axis=1),
                            alpha,
                        )
                    )
        points[key] = OperatingPoint(
            threshold=None if threshold is None else float(threshold),
            fnmr=fnmr[column],
            fmr=fmr[column],
            fnmr_ci=fnmr_ci,
            fmr_ci=fmr_ci,
            fmr_matrix=fmr_matrix[column],
            impostor_matrix=impostor_matrix,
            fnmr_max_over_geomean=_max_over_geomean(fnmr[column][name] for name in names),
            fmr_max_over_geomean=_max_over_geomean(fmr[column][name] for name in names),
            fdr=fdr,
            fdr_ci=fdr_ci,
        )
    return points


def _ranking(figures: Mapping[str, GroupFigures], point: OperatingPoint) -> dict[str, list[str]]:
    """Groups ordered best first by each figure that does not depend on the genuine:impostor ratio."""
    with_summary = {name: f.summary for name, f in figures.items() if f.summary is not None}
    tar = {name: next(iter(s["tar_at_far"].values()))["tar"] for name, s in with_summary.items()}
    return {
        "auc": sorted(with_summary, key=lambda name: -with_summary[name]["auc"]),
        "eer": sorted(with_summary, key=lambda name: with_summary[name]["eer"]["value"]),
        "tar_at_far": sorted(tar, key=lambda name: -tar[name]),
        "fnmr_at_global": sorted((n for n in figures if point.fnmr[n] is not None), key=lambda n: point.fnmr[n]),
        "fmr_at_global": sorted((n for n in figures if point.fmr[n] is not None), key=lambda n: point.fmr[n]),
    }


def _rates_dict(table: ScoreTable, threshold: float) -> dict[str, float | None]:
    fnmr, fmr = _rates(table, threshold)
    return {"fnmr": fnmr, "fmr": fmr}


def _own_thresholds_applied(
    chosen: ChosenThresholds, tables: Mapping[str, ScoreTable], similarity: Similarity, names: list[str]
) -> dict[str, dict[str, Any]]:
    """Rates of each group at its own thresholds (best F1, EER) chosen in an earlier run, where it had them."""
    groups: dict[str, dict[str, Any]] = {}
    for name in names:
        groups[name] = {
            kind: {"threshold": value, **_rates_dict(tables[name], float(similarity.from_model_units(value)))}
            for kind, value in chosen.groups.get(name, {}).items()
            if value is not None
        }
    return groups


def _calibration(
    pairs: _Pairs,
    names: list[str],
    identity_split: np.ndarray,
    identities: np.ndarray,
    codes: np.ndarray,
    options: GroupOptions,
    similarity: Similarity,
) -> dict[str, Any]:
    """Thresholds chosen on the development identities, rates on the held-out ones (pairs mixing the two are
    left out of both)."""

    def units(value: float) -> float | None:
        return similarity.threshold_for_report(value)

    development, held_out = pairs.table(split=0), pairs.table(split=1)
    result: dict[str, Any] = {
        "fraction": options.calibrate,
        "seed": options.seed,
        "n_development_identities": int((identity_split == 0).sum()),
        "n_held_out_identities": int((identity_split == 1).sum()),
        "global": None,
        "groups": {},
    }
    tau = None
    if development.n_genuine and development.n_impostor:
        chosen = tar_at_far(development, options.target_fmr)
        tau = chosen.threshold
        result["global"] = {
            "threshold": units(tau),
            "target_fmr": options.target_fmr,
            "development_fmr": chosen.fmr,
            "development_fnmr": chosen.fnmr,
            "held_out": _rates_dict(held_out, tau),
            "n_held_out_genuine": held_out.n_genuine,
            "n_held_out_impostor": held_out.n_impostor,
        }
    for code, name in enumerate(names):
        group_identities = np.unique(identities[codes == code])
        dev_table, test_table = pairs.table(code, code, 0), pairs.table(code, code, 1)
        entry: dict[str, Any] = {
            "n_development_identities": int((identity_split[group_identities] == 0).sum()),
            "n_held_out_identities": int((identity_split[group_identities] == 1).sum()),
            "held_out_at_global": None if tau is None else _rates_dict(test_table, tau),
            "best_f1": None,
            "eer": None,
        }
        if dev_table.n_genuine and dev_table.n_impostor:
            best = best_f1(threshold_sweep(dev_table))
            eer = equal_error_rate(dev_table)
            entry["best_f1"] = {
                "threshold": units(best.threshold),
                "development_f1": best.f1,
                "held_out": _rates_dict(test_table, best.threshold),
                "held_out_f1": float(sweep_at(test_table, [best.threshold]).f1[0])
                if test_table.n_genuine and test_table.n_impostor
                else None,
            }
            entry["eer"] = {
                "threshold": units(eer.threshold),
                "development_eer": eer.value,
                "held_out": _rates_dict(test_table, eer.threshold),
            }
        else:
            entry["flag"] = "the development identities of this group give no genuine or no impostor pair"
        result["groups"][name] = entry
    return result
