"""Writing a 1:N identification run to disk, and its terminal summary (schema: ``docs/identification-json.md``).

identification.json        every figure per model, thresholds in the model's own units
candidates.csv             each probe's top candidates with scores, its mate's rank and score
roles.csv                  the role of every image: a manifest that repeats the run
cmc.png fnir_fpir.png      CMC and FNIR-FPIR trade-off, one curve per model
<model>/identify_groups.png        rank-1, FNIR and FPIR per group of probes, 95 % intervals
<model>/fpir_gallery_size.png      FPIR at the global threshold against the gallery size
report.html                all of it on one page (`faceval.output.identify_html`), written by `IdentificationRun.save`
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceval.atomic import write_csv, write_json
from faceval.models.scoring import Similarity
from faceval.output import plots
from faceval.output.report import _safe_name, environment
from faceval.stats.bootstrap import CONFIDENCE, Interval
from faceval.stats.gallery import GALLERY, PROBE, write_roles_csv
from faceval.stats.identification import ALL_SEARCHES, CMC_RANKS, GroupFigures

if TYPE_CHECKING:  # annotations only: identify_run builds the run and calls this module
    from faceval.identify_run import IdentificationRun, ModelSearch

SCHEMA_VERSION = 1
_FIGURES = ("rank1", "fnir", "fpir")


def _interval(interval: Interval | None) -> list[float] | None:
    return None if interval is None else interval.to_list()


def _group_dict(figures: GroupFigures) -> dict[str, Any]:
    return {
        "n_mated": figures.n_mated,
        "n_nonmated": figures.n_nonmated,
        "n_identities": figures.n_identities,
        **{key: getattr(figures, key) for key in _FIGURES},
        **{f"{key}_ci": _interval(figures.intervals.get(key)) for key in _FIGURES},
    }


def _with_failures(fnir: float, fpir: float, n_mated: int, n_nonmated: int, failed: dict[str, int]) -> dict:
    """ISO/IEC 19795-1 and NIST FRTE 1:N: a probe without a template is a miss when its identity is enrolled, and
    returns no candidate (no false positive) when it is not."""
    mated, nonmated = n_mated + failed["mated"], n_nonmated + failed["nonmated"]
    return {
        "fnir_with_failures": (fnir * n_mated + failed["mated"]) / mated if mated else None,
        "fpir_with_failures": fpir * n_nonmated / nonmated if nonmated else None,
    }


def model_entry(run: IdentificationRun, model: ModelSearch) -> dict[str, Any]:
    """The ``models.<name>`` entry of ``identification.json``."""
    similarity, figures, options = model.similarity, model.figures, run.options
    units = similarity.threshold_for_report
    by_size = figures.by_gallery_size
    return {
        "similarity": similarity.value,
        "units": similarity.model_units,
        "accept_when": "distance <= threshold" if similarity is Similarity.EUCLIDEAN else "similarity >= threshold",
        "fusion": options.fusion,
        "n_gallery_images": int(run.gallery_images.size),
        "gallery_identities": model.gallery.n_identities,
        "n_searches": int(run.probes.size),
        "n_mated": figures.n_mated,
        "n_nonmated": figures.n_nonmated,
        "n_failed": model.n_failed,
        "rank": options.rank,
        "max_rank": figures.max_rank,
        "cmc": {str(rank): figures.cmc_at(rank) for rank in CMC_RANKS if rank <= figures.max_rank},
        "cmc_curve": figures.cmc.tolist(),
        "fnir_at_fpir": {
            key: None
            if point is None
            else {
                "fnir": point.fnir,
                "fpir": point.fpir,
                **_with_failures(point.fnir, point.fpir, figures.n_mated, figures.n_nonmated, model.n_failed),
                "threshold": units(point.threshold),
                "n_nonmated": point.n_nonmated,
                "supported": point.supported,
            }
            for key, point in figures.fnir_at_fpir.items()
        },
        "global_threshold": {
            "threshold": None if figures.global_threshold is None else units(figures.global_threshold),
            "chosen_by": figures.global_threshold_source,
        },
        "groups": {name: _group_dict(group) for name, group in figures.groups.items()},
        "fpir_by_gallery_size": None
        if by_size is None
        else {
            "sizes": by_size.sizes.tolist(),
            "fpir": {name: values.tolist() for name, values in by_size.fpir.items()},
        },
        "bootstrap": {
            "n_resamples": figures.n_resamples,
            "confidence": CONFIDENCE,
            "seed": options.seed,
            "resampled": "probe identities within their group; the gallery is fixed",
        },
        "model": model.description,
    }


def identification_document(run: IdentificationRun, command: Iterable[str] | None = None) -> dict[str, Any]:
    """The whole ``identification.json`` document."""
    roles = np.array(run.roles.roles)
    dataset = run.dataset
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else None,
        "environment": environment(),
        "dataset": {
            "root": str(dataset.root),
            "layout": dataset.layout,
            "n_images": dataset.n_images,
            "n_identities": dataset.n_identities,
            "n_gallery_images": int((roles == GALLERY).sum()),
            "n_probe_images": int((roles == PROBE).sum()),
            "roles": run.roles.source,
            "group_by": list(run.group_by),
        },
        "models": {name: model_entry(run, model) for name, model in run.models.items()},
        "notes": run.notes,
    }


def _candidate_rows(run: IdentificationRun) -> Iterator[list[Any]]:
    dataset = run.dataset
    for name, model in run.models.items():
        result, units = model.result, model.similarity.threshold_for_report
        for row, index in enumerate(run.probes):
            record = dataset.records[int(index)]
            rank = int(result.mate_rank[row])
            rank_text = "" if rank == 0 else (f">{result.max_rank}" if rank > result.max_rank else rank)
            mate_score = "" if rank == 0 else units(result.mate_score[row])
            for position, (candidate, score) in enumerate(
                zip(result.candidates[row], result.candidate_scores[row], strict=True), start=1
            ):
                identity = model.gallery.names[int(candidate)]
                yield [
                    name,
                    dataset.relative_path(record),
                    record.identity,
                    rank > 0,
                    rank_text,
                    mate_score,
                    position,
                    identity,
                    units(score),
                    identity == record.identity,
                ]


def write_identification(out_dir: str | Path, run: IdentificationRun, command: Iterable[str] | None = None) -> dict:
    """Write every output of a run into ``out_dir``; returns the ``identification.json`` document."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    document = identification_document(run, command)
    write_roles_csv(out / "roles.csv", run.dataset, run.roles)
    write_csv(
        out / "candidates.csv",
        ["model", "probe", "identity", "mated", "mate_rank", "mate_score", "rank", "candidate", "score", "is_mate"],
        _candidate_rows(run),
    )
    files = {"roles": "roles.csv", "candidates": "candidates.csv"}
    cmc = {name: model.figures.cmc for name, model in run.models.items() if model.figures.cmc.size}
    if cmc:
        plots.plot_cmc(cmc, out / "cmc.png", title="CMC: mate within rank")
        files["cmc"] = "cmc.png"
    curves = {
        name: (model.figures.trade_off.fpir, model.figures.trade_off.fnir)
        for name, model in run.models.items()
        if model.figures.trade_off is not None
    }
    if curves:
        rank = run.options.rank
        plots.plot_fnir_fpir(curves, out / "fnir_fpir.png", title=f"FNIR(T, {rank}) against FPIR(T) over thresholds T")
        files["fnir_fpir"] = "fnir_fpir.png"
    for name, model in run.models.items():
        entry = document["models"][name]
        entry["files"] = {}
        folder = out / _safe_name(name)
        threshold = entry["global_threshold"]["threshold"]
        at = "none" if threshold is None else f"{threshold:.4g}"
        groups = entry["groups"]
        if groups:
            names = list(groups)
            panels = {
                label: ([groups[g][key] for g in names], [groups[g][f"{key}_ci"] for g in names])
                for key, label in (
                    ("rank1", "rank-1 rate"),
                    ("fnir", f"FNIR(T, {run.options.rank})"),
                    ("fpir", "FPIR(T)"),
                )
            }
            plots.plot_group_figures(
                names,
                panels,
                folder / "identify_groups.png",
                title=f"{name}: per group of probes at T = {at} ({model.similarity.model_units})",
            )
            entry["files"]["groups"] = f"{folder.name}/identify_groups.png"
        by_size = model.figures.by_gallery_size
        if by_size is not None and by_size.fpir:
            plots.plot_fpir_by_gallery_size(
                by_size.sizes,
                by_size.fpir,
                folder / "fpir_gallery_size.png",
                title=f"{name}: FPIR at T = {at} against gallery size",
            )
            entry["files"]["fpir_gallery_size"] = f"{folder.name}/fpir_gallery_size.png"
    document["files"] = files
    write_json(out / "identification.json", document)
    return document


def _rate(value: float | None, interval: list[float] | None = None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" + (f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]" if interval else "")


def identification_summary_lines(document: dict[str, Any]) -> list[str]:
    """The terminal section: per model searches, CMC, FNIR at FPIR with thresholds, and the groups."""
    dataset = document["dataset"]
    lines = [
        f"1:N identification: {dataset['n_gallery_images']} gallery and {dataset['n_probe_images']} probe images of "
        f"{dataset['n_identities']} identities (roles {dataset['roles']})",
        f"{'model':<16}{'gallery ids':>12}{'mated':>8}{'non-mated':>10}{'rank-1':>8}{'rank-5':>8}{'rank-10':>8}"
        + "".join(f"{'FNIR@FPIR' + key:>16}{'threshold':>11}" for key in ("1e-1", "1e-2", "1e-3")),
    ]
    unsupported = False
    for name, model in document["models"].items():
        row = (
            f"{name[:15]:<16}{model['gallery_identities']:>12}{model['n_mated']:>8}{model['n_nonmated']:>10}"
            + "".join(f"{_rate(model['cmc'].get(str(rank))):>8}" for rank in (1, 5, 10))
        )
        for key in ("1e-1", "1e-2", "1e-3"):
            point = model["fnir_at_fpir"].get(key)
            if point is None:
                row += f"{'-':>16}{'-':>11}"
                continue
            unsupported |= not point["supported"]
            threshold = "none" if point["threshold"] is None else f"{point['threshold']:.4f}"
            row += f"{_rate(point['fnir']) + ('' if point['supported'] else '*'):>16}{threshold:>11}"
        lines.append(row)
    if unsupported:
        lines.append("* too few non-mated searches to measure that FPIR (rule of three: need 3 / FPIR)")
    for name, model in document["models"].items():
        chosen = model["global_threshold"]
        if not model["groups"]:
            continue
        threshold = "none" if chosen["threshold"] is None else f"{chosen['threshold']:.4f}"
        lines.append(
            f"groups ({name}): at threshold {threshold} ({model['units']}, {chosen['chosen_by']}), rank "
            f"R = {model['rank']}; 95 % intervals from {model['bootstrap']['n_resamples']} identity resamples"
        )
        lines.append(f"{'group':<28}{'mated':>7}{'non-mated':>10}  {'rank-1':<22}{'FNIR':<22}FPIR")
        for group, figures in sorted(model["groups"].items(), key=lambda item: item[0] == ALL_SEARCHES):
            lines.append(
                f"{group[:27]:<28}{figures['n_mated']:>7}{figures['n_nonmated']:>10}  "
                f"{_rate(figures['rank1'], figures['rank1_ci']):<22}{_rate(figures['fnir'], figures['fnir_ci']):<22}"
                f"{_rate(figures['fpir'], figures['fpir_ci'])}"
            )
        by_size = model["fpir_by_gallery_size"]
        if by_size is not None and ALL_SEARCHES in by_size["fpir"]:
            pairs = ", ".join(
                f"{size}: {fpir:.3f}"
                for size, fpir in zip(by_size["sizes"], by_size["fpir"][ALL_SEARCHES], strict=True)
            )
            lines.append(f"FPIR at that threshold against gallery identities ({name}): {pairs}")
    lines.extend(f"note: {note}" for note in document["notes"])
    return lines
