"""The group analysis presented: ``metrics.json`` entries, terminal text, ``groups.csv`` and the group figures.

`faceval.stats.groups` computes the statistics (`GroupReport` and its typed parts); this module only turns them into
JSON, text, CSV and PNG files, with thresholds converted to the model's units by
`Similarity.threshold_for_report` here and nowhere earlier.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from faceval.atomic import write_csv
from faceval.output import plots
from faceval.stats.bootstrap import Interval
from faceval.stats.groups import ALL, ALL_PAIRS, GroupFigures, GroupReport, OperatingPoint
from faceval.stats.metrics import roc_curve


def group_report_dict(report: GroupReport) -> dict[str, Any]:
    """A model's group entries in ``metrics.json`` (strict JSON; thresholds in the model's units)."""
    global_threshold = {
        "target_fmr": report.target_fmr,
        **report.global_figure,
        **_point_dict(report, report.global_point),
    }
    document: dict[str, Any] = {
        "group_by": list(report.group_by),
        "groups": {name: _figures_dict(report, figures) for name, figures in report.groups.items()},
        "all_pairs": _figures_dict(report, report.overall),
        "global_threshold": global_threshold,
        "at_threshold": None if report.user_point is None else _point_dict(report, report.user_point),
        "applied_thresholds": None
        if report.applied is None
        else {
            **report.applied,
            "global": None if report.applied_point is None else _point_dict(report, report.applied_point),
        },
        "calibration": report.calibration,
        "group_ranking": report.ranking,
        "group_ratios_differ": report.ratios_differ,
        "bootstrap": report.bootstrap,
        "group_notes": list(report.notes),
    }
    return json.loads(json.dumps(document, allow_nan=False))


def _figures_dict(report: GroupReport, figures: GroupFigures) -> dict[str, Any]:
    units = report.similarity.threshold_for_report
    table, summary = figures.table, figures.summary
    entry: dict[str, Any] = {
        "n_images": figures.n_images,
        "n_identities": figures.n_identities,
        "n_genuine": table.n_genuine,
        "n_impostor": table.n_impostor,
        "genuine_impostor_ratio": table.n_genuine / table.n_impostor if table.n_impostor else None,
        "n_failed": figures.n_failed,
        "fte": figures.fte,
    }
    intervals = {key: _interval_list(value) for key, value in figures.intervals.items()}
    if summary is None:
        entry.update({"auc": None, "auc_ci": None, "eer": None, "eer_ci": None, "eer_threshold": None})
        entry.update({"eer_bracket": None, "tar_at_far": None, "best_f1": None})
    else:
        eer, tar = summary["eer"], next(iter(summary["tar_at_far"].values()))
        entry.update(
            {
                "auc": summary["auc"],
                "auc_ci": intervals.get("auc"),
                "eer": eer["value"],
                "eer_ci": intervals.get("eer"),
                "eer_threshold": units(eer["threshold"]),
                "eer_bracket": [eer["low"], eer["high"]],
                "tar_at_far": {
                    **tar,
                    "threshold": units(tar["threshold"]),
                    "tar_ci": intervals.get("tar"),
                },
                "best_f1": {**summary["best_f1"], "threshold": units(summary["best_f1"]["threshold"])},
            }
        )
    for prefix, point in (("global", report.global_point), ("threshold", report.user_point)):
        if point is not None:
            name = figures.name
            entry[f"fnmr_at_{prefix}"] = point.fnmr.get(name)
            entry[f"fnmr_at_{prefix}_ci"] = _interval_list(point.fnmr_ci.get(name))
            entry[f"fmr_at_{prefix}"] = point.fmr.get(name)
            entry[f"fmr_at_{prefix}_ci"] = _interval_list(point.fmr_ci.get(name))
            adjusted = figures.with_failures(point.fnmr.get(name), point.fmr.get(name))
            entry[f"fnmr_at_{prefix}_with_failures"] = adjusted["fnmr_with_failures"]
            entry[f"fmr_at_{prefix}_with_failures"] = adjusted["fmr_with_failures"]
    entry["flags"] = list(figures.flags)
    return entry


def _point_dict(report: GroupReport, point: OperatingPoint) -> dict[str, Any]:
    with np.errstate(divide="ignore"):
        log_ratio = np.log10(point.fmr_matrix / report.target_fmr)
    return {
        "threshold": report.similarity.threshold_for_report(point.threshold),
        "fnmr": point.fnmr.get(ALL_PAIRS),
        "fnmr_ci": _interval_list(point.fnmr_ci.get(ALL_PAIRS)),
        "fmr": point.fmr.get(ALL_PAIRS),
        "fmr_ci": _interval_list(point.fmr_ci.get(ALL_PAIRS)),
        **report.overall.with_failures(point.fnmr.get(ALL_PAIRS), point.fmr.get(ALL_PAIRS)),
        "groups": {
            name: {
                "fnmr": point.fnmr.get(name),
                "fnmr_ci": _interval_list(point.fnmr_ci.get(name)),
                "fmr": point.fmr.get(name),
                "fmr_ci": _interval_list(point.fmr_ci.get(name)),
                **report.groups[name].with_failures(point.fnmr.get(name), point.fmr.get(name)),
            }
            for name in report.names
        },
        "fmr_matrix": {
            "groups": report.names,
            "fmr": _nested(point.fmr_matrix),
            "log10_fmr_over_target": _nested(log_ratio),
            "n_impostor": point.impostor_matrix.tolist(),
        },
        "fnmr_max_over_geomean": point.fnmr_max_over_geomean,
        "fmr_max_over_geomean": point.fmr_max_over_geomean,
        "fdr": point.fdr,
        "fdr_ci": _interval_list(point.fdr_ci),
        "fdr_alpha": report.fdr_alpha,
    }


def report_summary_lines(report: GroupReport, model: str) -> list[str]:
    """The group table of ``report`` for a terminal (`group_summary_lines` of its ``metrics.json`` entries)."""
    return group_summary_lines({**group_report_dict(report), "units": report.similarity.model_units}, model)


def group_summary_lines(entry: Mapping[str, Any], model: str) -> list[str]:
    """Terminal lines from a model's ``metrics.json`` entry (`group_report_dict` merged with ``units``): the group
    table with 95 % intervals, rates at the global (and the user's) threshold, the FDR, and the notes."""

    def figure(value: float | None, interval: list[float] | None, digits: int = 3) -> str:
        if value is None:
            return "-"
        bounds = f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]" if interval else ""
        return f"{value:.{digits}f}{bounds}"

    chosen, units = entry["global_threshold"], entry.get("units", "score")
    target = chosen["target_fmr"]
    threshold = "none (see the notes)" if chosen["threshold"] is None else f"{chosen['threshold']:.4f}"
    # Without groups the one group is the whole set: one row says it all.
    grouped = list(entry["groups"]) != [ALL]
    lines = [
        f"{'groups' if grouped else 'intervals'} ({model}): global threshold {threshold} ({units}) "
        f"at FMR {target:g} over all "
        f"{chosen['n_impostor']:,} impostor pairs; 95 % intervals from {entry['bootstrap']['n_resamples']} "
        "identity resamples",
        f"{'group':<28}{'images':>7}{'ids':>5}{'genuine':>9}{'impostor':>10}{'FTE':>7}  {'AUC':<22}"
        f"{'EER':<22}{'FNMR at global':<22}{'FMR at global':<26}{'x target':>9}",
    ]
    rows = {**entry["groups"], ALL_PAIRS: entry["all_pairs"]} if grouped else {ALL: entry["all_pairs"]}
    for name, group in rows.items():
        fte = "-" if group["fte"] is None else f"{group['fte']:.3f}"
        fmr = group.get("fmr_at_global")
        times = "-" if fmr is None else f"{fmr / target:.1f}"
        lines.append(
            f"{name[:27]:<28}{group['n_images']:>7}{group['n_identities']:>5}{group['n_genuine']:>9,}"
            f"{group['n_impostor']:>10,}{fte:>7}  {figure(group['auc'], group['auc_ci']):<22}"
            f"{figure(group['eer'], group['eer_ci']):<22}"
            f"{figure(group.get('fnmr_at_global'), group.get('fnmr_at_global_ci')):<22}"
            f"{figure(fmr, group.get('fmr_at_global_ci'), 5):<26}{times:>9}"
        )
    if chosen["fdr"] is not None:
        lines.append(f"fairness discrepancy rate at the global threshold: {figure(chosen['fdr'], chosen['fdr_ci'])}")

    def rates(point: Mapping[str, Any]) -> str:
        return ", ".join(
            f"{name} FNMR {figure(values['fnmr'], None)} FMR {figure(values['fmr'], None, 4)}"
            for name, values in point["groups"].items()
        )

    if entry.get("at_threshold") is not None:
        lines.append(f"at threshold {entry['at_threshold']['threshold']:g} ({units}): {rates(entry['at_threshold'])}")
    applied = entry.get("applied_thresholds")
    if applied is not None and applied["global"] is not None:
        lines.append(
            f"at threshold {applied['global']['threshold']:g} from {applied['source']}: {rates(applied['global'])}"
        )
    calibration = entry.get("calibration")
    if calibration is not None and calibration["global"] is not None:
        chosen_on_development, held_out = calibration["global"], calibration["global"]["held_out"]
        lines.append(
            f"calibrated: threshold {figure(chosen_on_development['threshold'], None, 4)} chosen on "
            f"{calibration['n_development_identities']} identities gives FMR {figure(held_out['fmr'], None, 5)} "
            f"(target {target:g}) and FNMR {figure(held_out['fnmr'], None)} on the "
            f"{calibration['n_held_out_identities']} others"
        )
    lines.extend(f"note: {note}" for note in entry["group_notes"])
    return lines


def _interval_list(interval: Interval | None) -> list[float] | None:
    return None if interval is None else interval.to_list()


def _nested(matrix: np.ndarray) -> list[list[float | None]]:
    """A matrix as lists with None for NaN, and -inf (log of a zero FMR) also None."""
    return [[float(value) if np.isfinite(value) else None for value in row] for row in matrix]


def _csv_value(value: Any) -> Any:
    return "" if value is None else value


def write_groups_csv(path: str | Path, report: GroupReport) -> Path:
    """``groups.csv``: one row per group and one for all pairs, thresholds in the model's units."""
    path = Path(path)
    document = group_report_dict(report)
    header = [
        "group", "n_images", "n_identities", "n_genuine", "n_impostor", "genuine_impostor_ratio", "n_failed", "fte",
        "auc", "auc_low", "auc_high", "eer", "eer_low", "eer_high", "eer_threshold", "tar_at_far", "tar_low",
        "tar_high", "far", "tar_supported", "best_f1", "best_f1_threshold", "fnmr_at_global", "fnmr_at_global_low",
        "fnmr_at_global_high", "fmr_at_global", "fmr_at_global_low", "fmr_at_global_high", "fmr_over_target",
        "fnmr_at_threshold", "fmr_at_threshold", "flags",
    ]  # fmt: skip
    rows = []
    entries = {**document["groups"], ALL_PAIRS: document["all_pairs"]}
    for name, entry in entries.items():
        tar = entry["tar_at_far"] or {}
        best = entry["best_f1"] or {}

        def bounds(key: str, entry: dict[str, Any] = entry) -> list[Any]:
            return list(entry.get(key) or (None, None))

        fmr_global = entry.get("fmr_at_global")
        row = [
            name, entry["n_images"], entry["n_identities"], entry["n_genuine"], entry["n_impostor"],
            entry["genuine_impostor_ratio"], entry["n_failed"], entry["fte"], entry["auc"], *bounds("auc_ci"),
            entry["eer"], *bounds("eer_ci"), entry["eer_threshold"], tar.get("tar"),
            *list(tar.get("tar_ci") or (None, None)),
            tar.get("far"), tar.get("supported"), best.get("f1"), best.get("threshold"), entry.get("fnmr_at_global"),
            *bounds("fnmr_at_global_ci"), fmr_global, *bounds("fmr_at_global_ci"),
            None if fmr_global is None else fmr_global / report.target_fmr, entry.get("fnmr_at_threshold"),
            entry.get("fmr_at_threshold"), "; ".join(entry["flags"]),
        ]  # fmt: skip
        rows.append([_csv_value(value) for value in row])
    write_csv(path, header, rows)
    return path


def write_group_files(folder: str | Path, report: GroupReport, model: str) -> dict[str, str]:
    """``groups.csv`` and the group figures of one model in ``folder``; returns ``{key: file name}``.

    ROC (linear and log FMR) and DET with one curve per group (where a group has both kinds of pair), FNMR and
    FMR per group at the global threshold with interval bars and the cross-group FMR heatmap (where there is a
    global threshold), and per-group score histograms.
    """
    folder = Path(folder)
    files = {"groups_csv": write_groups_csv(folder / "groups.csv", report).name}
    # One group holds every pair: its ROC, DET, histograms and 1 x 1 heatmap would repeat the model's own figures.
    grouped = len(report.groups) > 1
    curves = []
    for name, figures in report.groups.items() if grouped else ():
        if figures.summary is None:
            continue
        roc = roc_curve(figures.table)
        interval = figures.intervals.get("auc")
        ci = f" [{interval.low:.3f}, {interval.high:.3f}]" if interval else ""
        curves.append(plots.Curve(f"{name} (AUC {figures.summary['auc']:.3f}{ci})", roc.fmr, roc.tmr))
    if curves:
        plots.plot_roc(curves, folder / "groups_roc.png", title=f"{model}: ROC per group")
        plots.plot_roc(curves, folder / "groups_roc_log.png", log_fmr=True, title=f"{model}: ROC per group (log FMR)")
        plots.plot_det(curves, folder / "groups_det.png", title=f"{model}: DET per group")
        files.update(groups_roc="groups_roc.png", groups_roc_log="groups_roc_log.png", groups_det="groups_det.png")
    point = report.global_point
    threshold_text = report.similarity.threshold_for_report(point.threshold)
    if point.threshold is not None and grouped:
        files.update(_global_rate_figures(folder, report, model, threshold_text))
    markers = {} if threshold_text is None else {"global threshold": threshold_text}
    given = None if report.user_point is None else report.similarity.threshold_for_report(report.user_point.threshold)
    if given is not None:
        markers["given threshold"] = given
    if not grouped:
        return files
    plots.plot_group_histograms(
        {
            name: (
                report.similarity.to_model_units(figures.table.thresholds),
                figures.table.genuine,
                figures.table.impostor,
            )
            for name, figures in report.groups.items()
            if len(figures.table)
        },
        folder / "groups_histograms.png",
        units=report.similarity.model_units,
        markers=markers,
        title=f"{model}: genuine and impostor scores per group",
    )
    files["groups_histograms"] = "groups_histograms.png"
    return files


def _global_rate_figures(folder: Path, report: GroupReport, model: str, threshold_text: float | None) -> dict[str, str]:
    """FNMR and FMR per group at the global threshold, and the cross-group FMR heatmap (there must be a global
    threshold; ``threshold_text`` is None where it is +inf, accepting nothing)."""
    point = report.global_point
    plots.plot_group_rates(
        report.names,
        [point.fnmr[name] for name in report.names],
        [point.fnmr_ci.get(name) and point.fnmr_ci[name].to_list() for name in report.names],
        [point.fmr[name] for name in report.names],
        [point.fmr_ci.get(name) and point.fmr_ci[name].to_list() for name in report.names],
        report.target_fmr,
        folder / "groups_rates.png",
        title=f"{model}: FNMR and FMR per group at the global threshold "
        f"{'none' if threshold_text is None else f'{threshold_text:.4g}'} (FMR {report.target_fmr:g} overall)",
    )
    plots.plot_fmr_heatmap(
        report.names,
        point.fmr_matrix,
        report.target_fmr,
        folder / "groups_fmr_heatmap.png",
        title=f"{model}: log10(FMR / {report.target_fmr:g}) at the global threshold",
    )
    return {"groups_rates": "groups_rates.png", "groups_fmr_heatmap": "groups_fmr_heatmap.png"}
