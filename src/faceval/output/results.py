"""Typed results of an evaluation: what `faceval.evaluate` returns, and what every output is made from.

A `Result` holds one `ModelFigures` per model (thresholds already in the model's own units: a distance for dlib,
accepted when ``distance <= threshold``), each model's `GroupReport` (groups and identity-bootstrap intervals),
the pairwise `ModelComparison` entries and the notes. ``metrics.json``, ``models.csv``, the terminal summary and
`Result.to_frame` are all written from these objects (`faceval.output.report`, `faceval.output.summary`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceval.models.scoring import Similarity
from faceval.stats.lattice import resolution
from faceval.stats.metrics import (
    DEFAULT_FARS,
    Sweep,
    best_f1,
    equal_error_rate,
    excluded_share,
    failure_adjusted_rates,
    far_key,
    roc_auc,
    sweep_at,
    tar_at_far,
    threshold_sweep,
)

if TYPE_CHECKING:
    import pandas

    from faceval.models.extraction import EmbeddingSet
    from faceval.output.figure_process import FigureProcess
    from faceval.sources.datasets import Dataset
    from faceval.stats.audit import Audit
    from faceval.stats.comparison import ModelComparison
    from faceval.stats.groups import GroupReport
    from faceval.stats.metrics import ScoreTable

# Thresholds users already apply, to show what their current setting does on their people: dlib's 0.6
# (face_recognition's default tolerance), a Euclidean distance.
REFERENCE_THRESHOLDS = {("dlib", Similarity.EUCLIDEAN): 0.6}


def reference_threshold(model: str, similarity: Similarity) -> float | None:
    """The customary threshold of a model, in its units, when it has one.

    >>> reference_threshold("dlib", Similarity.EUCLIDEAN), reference_threshold("sface", Similarity.COSINE)
    (0.6, None)
    """
    return REFERENCE_THRESHOLDS.get((model, similarity))


@dataclass(frozen=True)
class ModelResult:
    """One model's scores on the evaluated pairs, kept as exact per-score counts."""

    name: str
    similarity: Similarity
    description: dict[str, Any]
    n_images: int
    n_failed: int
    table: ScoreTable


@dataclass
class Evaluation:
    """Everything a report needs: the dataset's shape, each model's result, and what the user should know."""

    dataset: dict[str, Any]
    models: dict[str, ModelResult]
    notes: list[str] = field(default_factory=list)
    groups: dict[str, GroupReport] = field(default_factory=dict)
    comparisons: list[ModelComparison] = field(default_factory=list)
    # Extra entries of models.<name> in metrics.json (a pair list's 10-fold accuracy, a score file's groups).
    model_extras: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class OperatingPoint:
    """FMR and FNMR at one threshold (model units; None where no threshold is strict enough, so nothing is
    accepted), and the same with failures counted against the system
    (`faceval.stats.metrics.failure_adjusted_rates`)."""

    threshold: float | None
    fmr: float
    fnmr: float
    fmr_with_failures: float
    fnmr_with_failures: float


@dataclass(frozen=True)
class DecisionPoint(OperatingPoint):
    """An operating point with the ratio-dependent figures too (they change with the genuine:impostor ratio)."""

    f1: float
    precision: float
    recall: float
    accuracy: float


@dataclass(frozen=True)
class TarAtFarPoint(OperatingPoint):
    """TAR at a target FAR: the threshold is the loosest whose FMR ``<= far``; ``fmr`` is the FMR reached;
    ``supported`` is False with fewer than ``3 / far`` impostor pairs (rule of three)."""

    far: float
    tar: float
    n_impostor: int
    supported: bool


@dataclass(frozen=True)
class EqualErrorRate:
    """The EER: ``value`` interpolated where FMR and FNMR cross, its threshold, the neighbouring distinct
    thresholds (``threshold_above`` is the stricter; None for +inf) and the bracket ``[low, high]``; at the EER
    both rates are ``value``, so ``fmr_with_failures``/``fnmr_with_failures`` adjust that."""

    value: float
    threshold: float | None
    low: float
    high: float
    threshold_above: float | None
    threshold_below: float | None
    fmr_with_failures: float
    fnmr_with_failures: float


@dataclass(frozen=True)
class ModelFigures:
    """One model's verification figures over the scored pairs (None where they need both kinds of pair).

    ``fte`` is the model's own failure share of the dataset; ``fte_for_adjusted_rates`` the share of images
    missing from the scored set, which the ``*_with_failures`` rates use (with several models, the images any
    of them failed on). ``description`` holds the model's settings and file checksums.
    """

    name: str
    similarity: Similarity
    n_images: int
    n_failed: int
    fte: float | None
    fte_for_adjusted_rates: float | None
    n_genuine: int
    n_impostor: int
    auc: float | None
    eer: EqualErrorRate | None
    best_f1: DecisionPoint | None
    tar_at_far: dict[str, TarAtFarPoint | None]
    at_reference_threshold: DecisionPoint | None
    description: dict[str, Any]
    # How exact the figures are: one threshold per distinct score, or a lattice (`faceval.stats.lattice.resolution`).
    resolution: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def units(self) -> str:
        """``"distance"`` or ``"cosine similarity"`` (a score file's description names its own)."""
        return self.description.get("units", self.similarity.model_units)

    @property
    def accept_when(self) -> str:
        """The decision rule in the model's units."""
        rule = "distance <= threshold" if self.similarity is Similarity.EUCLIDEAN else "similarity >= threshold"
        return self.description.get("accept_when", rule)

    @property
    def n_pairs(self) -> int:
        return self.n_genuine + self.n_impostor

    def to_dict(self) -> dict[str, Any]:
        """The ``models.<name>`` entry of ``metrics.json`` (without the group analysis)."""
        entry: dict[str, Any] = {
            "similarity": self.similarity.value,
            "units": self.units,
            "accept_when": self.accept_when,
            "n_images": self.n_images,
            "n_failed": self.n_failed,
            "fte": self.fte,
            "fte_for_adjusted_rates": self.fte_for_adjusted_rates,
            "n_pairs": self.n_pairs,
            "n_genuine": self.n_genuine,
            "n_impostor": self.n_impostor,
            "resolution": self.resolution,
            "auc": self.auc,
            "eer": _plain(self.eer),
            "best_f1": _plain(self.best_f1),
            "tar_at_far": {key: _plain(point) for key, point in self.tar_at_far.items()},
        }
        if self.at_reference_threshold is not None:
            entry["at_reference_threshold"] = _plain(self.at_reference_threshold)
        entry["model"] = self.description
        return entry


def _plain(value: Any) -> dict[str, Any] | None:
    return None if value is None else dataclasses.asdict(value)


def model_figures(result: ModelResult, n_dataset_images: int, fars: Sequence[float] = DEFAULT_FARS) -> ModelFigures:
    """Every figure of one model from its exact score table, thresholds converted to the model's units here."""
    table, similarity = result.table, result.similarity
    share = excluded_share(result.n_images, n_dataset_images)
    fte = 0.0 if share is None else share
    units = similarity.threshold_for_report
    common = {
        "name": result.name,
        "similarity": similarity,
        "n_images": result.n_images,
        "n_failed": result.n_failed,
        "fte": result.n_failed / n_dataset_images if n_dataset_images else None,
        "fte_for_adjusted_rates": share,
        "n_genuine": table.n_genuine,
        "n_impostor": table.n_impostor,
        "description": result.description,
        "resolution": resolution(table),
    }
    if not (table.n_genuine and table.n_impostor):
        return ModelFigures(
            **common,
            auc=None,
            eer=None,
            best_f1=None,
            tar_at_far=dict.fromkeys(map(far_key, fars)),
            at_reference_threshold=None,
        )

    def decision(point: Sweep) -> DecisionPoint:
        fmr, fnmr = float(point.fmr[0]), float(point.fnmr[0])
        adjusted_fnmr, adjusted_fmr = failure_adjusted_rates(fnmr, fmr, fte)
        return DecisionPoint(
            threshold=units(float(point.threshold[0])),
            fmr=fmr,
            fnmr=fnmr,
            fmr_with_failures=adjusted_fmr,
            fnmr_with_failures=adjusted_fnmr,
            f1=float(point.f1[0]),
            precision=float(point.precision[0]),
            recall=float(point.recall[0]),
            accuracy=float(point.accuracy[0]),
        )

    def tar_point(far: float) -> TarAtFarPoint:
        figure = tar_at_far(table, far)
        adjusted_fnmr, adjusted_fmr = failure_adjusted_rates(figure.fnmr, figure.fmr, fte)
        return TarAtFarPoint(
            threshold=units(figure.threshold),
            fmr=figure.fmr,
            fnmr=figure.fnmr,
            fmr_with_failures=adjusted_fmr,
            fnmr_with_failures=adjusted_fnmr,
            far=figure.far,
            tar=figure.tar,
            n_impostor=figure.n_impostor,
            supported=figure.supported,
        )

    eer = equal_error_rate(table)
    eer_fnmr, eer_fmr = failure_adjusted_rates(eer.value, eer.value, fte)
    best = best_f1(threshold_sweep(table))
    # Templates are L2-normalised averages: a model's customary threshold is not on their scale.
    reference = None if "templates" in result.description else reference_threshold(result.name, similarity)
    return ModelFigures(
        **common,
        auc=roc_auc(table),
        eer=EqualErrorRate(
            value=eer.value,
            threshold=units(eer.threshold),
            low=eer.low,
            high=eer.high,
            threshold_above=units(eer.threshold_above),
            threshold_below=units(eer.threshold_below),
            fmr_with_failures=eer_fmr,
            fnmr_with_failures=eer_fnmr,
        ),
        best_f1=decision(sweep_at(table, [best.threshold])),
        tar_at_far={far_key(far): tar_point(far) for far in fars},
        at_reference_threshold=None
        if reference is None
        else dataclasses.replace(
            decision(sweep_at(table, [similarity.from_model_units(reference)])), threshold=reference
        ),
    )


@dataclass
class Result:
    """An evaluation: each model's figures, its group analysis, the model comparisons and the notes.

    ``models[name]`` is a `ModelFigures` (thresholds in the model's units); ``groups[name]`` a `GroupReport` with
    per-group figures and identity-bootstrap intervals; `compare` gives the paired comparison of two models;
    `save` writes ``metrics.json``, CSV files and plots; `to_frame` gives one row per model (pandas).
    """

    evaluation: Evaluation
    dataset: Dataset | None = None
    embedding_sets: Sequence[EmbeddingSet] = ()
    audit: Audit | None = None
    exclusion: dict[str, Any] | None = None
    models: dict[str, ModelFigures] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        images = self.evaluation.dataset["n_images"]
        self.models = {name: model_figures(result, images) for name, result in self.evaluation.models.items()}

    @property
    def groups(self) -> dict[str, GroupReport]:
        """Each model's group analysis (one group, "all", when no groups were given)."""
        return self.evaluation.groups

    @property
    def comparisons(self) -> list[ModelComparison]:
        """Every pair of models, compared on the same pairs."""
        return self.evaluation.comparisons

    @property
    def notes(self) -> list[str]:
        """Plain-language warnings about the data and what was left out."""
        return self.evaluation.notes

    @property
    def population(self) -> dict[str, Any]:
        """The dataset's shape: where it was read from, images, identities, what was scored."""
        return self.evaluation.dataset

    def compare(self, model_a: str, model_b: str) -> ModelComparison:
        """The paired comparison of two models (AUC difference ``a - b``, bootstrap interval, DeLong's p)."""
        for comparison in self.comparisons:
            if (comparison.name_a, comparison.name_b) == (model_a, model_b):
                return comparison
            if (comparison.name_a, comparison.name_b) == (model_b, model_a):
                return comparison.swapped()
        known = ", ".join(self.models)
        if model_a not in self.models or model_b not in self.models:
            raise KeyError(f"no model {model_a!r} or {model_b!r} in this result; the models are {known}")
        raise KeyError(
            f"{model_a} and {model_b} were not compared: comparisons need the group analysis (resamples > 0 and "
            "at least two models on the same images)"
        )

    def to_dict(self, command: Iterable[str] | None = None) -> dict[str, Any]:
        """The ``metrics.json`` document (strict JSON values)."""
        from faceval.output.report import metrics_document

        return metrics_document(self, command)

    def save(
        self,
        out_dir: str | Path,
        command: Iterable[str] | None = None,
        *,
        html: bool = True,
        lang: str = "en",
        full_sweep: bool = False,
        figures: FigureProcess | None = None,
    ) -> Path:
        """Write ``metrics.json``, CSV files, plots, the audit and ``report.html`` (``lang`` en | ja; ``html=False``
        to skip it) into ``out_dir``; ``full_sweep`` adds every threshold of each model's table as
        ``sweep_full.npz``; ``figures`` a `faceval.output.figure_process.FigureProcess` started earlier to draw the PNG
        files (default: drawn here). Returns the path of ``metrics.json``."""
        from faceval.output.html_report import write_html_report
        from faceval.output.report import write_report
        from faceval.stats.audit import write_audit

        document = write_report(out_dir, self, command, full_sweep=full_sweep, figures=figures)
        audit_document = None if self.audit is None else write_audit(out_dir, self.audit)
        if html:
            write_html_report(out_dir, document, audit_document, self.exclusion, lang)
        else:
            # An earlier run's page beside this run's metrics.json would show figures this run did not compute.
            (Path(out_dir) / "report.html").unlink(missing_ok=True)
        return Path(out_dir) / "metrics.json"

    def to_frame(self) -> pandas.DataFrame:
        """One row per model, the columns of ``models.csv`` (needs pandas: ``pip install pandas``)."""
        try:
            import pandas
        except ImportError as error:
            raise ImportError("Result.to_frame needs pandas: pip install pandas") from error
        header, rows = model_table(self)
        return pandas.DataFrame(list(rows), columns=header).set_index("model")


def model_table(result: Result) -> tuple[list[str], list[list[Any]]]:
    """The comparison table, one row per model, thresholds in each model's units (``models.csv``, `to_frame`)."""
    columns = {
        "units": lambda m: m.units,
        "n_images": lambda m: m.n_images,
        "n_failed": lambda m: m.n_failed,
        "fte": lambda m: m.fte,
        "n_genuine": lambda m: m.n_genuine,
        "n_impostor": lambda m: m.n_impostor,
        "auc": lambda m: m.auc,
        "eer": lambda m: m.eer.value,
        "eer_threshold": lambda m: m.eer.threshold,
        "tar_at_far_1e-3": lambda m: m.tar_at_far["1e-3"].tar,
        "tar_threshold_1e-3": lambda m: m.tar_at_far["1e-3"].threshold,
        "best_f1": lambda m: m.best_f1.f1,
        "best_f1_threshold": lambda m: m.best_f1.threshold,
    }
    rows = []
    for name, model in result.models.items():
        row: list[Any] = [name]
        for read in columns.values():
            try:
                row.append(read(model))
            except (AttributeError, KeyError):  # a figure that does not exist (no pairs of one kind)
                row.append(None)
        rows.append(row)
    return ["model", *columns], rows
