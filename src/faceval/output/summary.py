"""The terminal summary of a `Result`: one line per model, the group tables, comparisons and notes."""

from __future__ import annotations

from pathlib import Path

from faceval.output.group_presentation import report_summary_lines
from faceval.output.results import Result
from faceval.stats.audit import audit_summary_lines
from faceval.stats.comparison import comparison_summary_line


def summary_lines(result: Result, out_dir: str | Path | None = None) -> list[str]:
    """Per model images, failures, pairs, AUC, EER, best-F1 threshold and TAR@FAR 1e-3 (thresholds in the model's
    units), its customary threshold's rates, the group tables, the comparisons and the notes."""
    population = result.population
    skipped = population.get("n_skipped_files")
    templates = population.get("templates")
    if "n_scores" in population:  # a score file: no images
        shape = f"{population['n_scores']:,} scores from {population['root']}"
    elif templates:
        shape = (f"{templates['n_templates']} templates of {population['n_identities']} identities "
                 f"({templates['n_images_listed']} images listed in {templates['file']})")  # fmt: skip
    else:
        shape = f"{population['n_images']} images of {population['n_identities']} identities" + (
            f" ({skipped} other files set aside)" if skipped else ""
        )
    pairs = population.get("pairs")
    lines = [
        "",
        shape,
        *([f"pairs from {pairs['file']}: {pairs['n_scored']} scored, {pairs['n_failed']} failed"] if pairs else []),
        f"{'model':<16}{'images':>8}{'failed':>8}{'pairs':>12}{'AUC':>8}{'EER':>8}{'best-F1 thr':>13}"
        f"{'F1':>7}{'TAR@FAR1e-3':>13}",
    ]
    unsupported = False
    for name, model in result.models.items():
        counts = f"{name:<16}{model.n_images:>8}{model.n_failed:>8}{model.n_pairs:>12}"
        if model.auc is None:
            lines.append(f"{counts}   (no metrics)")
            continue
        tar = model.tar_at_far["1e-3"]
        unsupported |= not tar.supported
        lines.append(
            f"{counts}{model.auc:>8.4f}{model.eer.value:>8.4f}{model.best_f1.threshold:>13.4f}{model.best_f1.f1:>7.3f}"
            f"{f'{tar.tar:.3f}' + ('' if tar.supported else '*'):>13}"
        )
        reference = model.at_reference_threshold
        if reference is not None:
            lines.append(
                f"{'':<16}at the customary threshold {reference.threshold:g} ({model.units}): "
                f"FMR {reference.fmr:.4f}, FNMR {reference.fnmr:.4f}, F1 {reference.f1:.3f}"
            )
    if unsupported:
        lines.append("* too few impostor pairs to measure FMR 1e-3 (rule of three: need 3,000)")
    for name, report in result.groups.items():
        lines += ["", *report_summary_lines(report, name)]
    for name, extras in result.evaluation.model_extras.items():
        for form, figures in extras.get("ten_fold", {}).items():
            lines.append(f"{name}: {len(figures['fold_accuracies'])}-fold accuracy ({form}) "
                         f"{figures['mean']:.4f} +- {figures['std']:.4f}")  # fmt: skip
        score_groups = extras.get("score_groups", {})
        if score_groups:
            lines += ["", f"groups ({name}): {'genuine':>10}{'impostor':>12}{'AUC':>8}{'EER':>8}{'TAR@FAR1e-3':>13}"]
        for group, entry in score_groups.items():
            if entry["auc"] is None:
                lines.append(f"  {group:<16}{entry['n_genuine']:>10,}{entry['n_impostor']:>12,}   (no metrics)")
                continue
            tar = f"{entry['tar_at_far']['1e-3']['tar']:.3f}"
            lines.append(
                f"  {group:<16}{entry['n_genuine']:>10,}{entry['n_impostor']:>12,}{entry['auc']:>8.4f}"
                f"{entry['eer']['value']:>8.4f}{tar:>13}"
            )
    lines += [comparison_summary_line(comparison.to_dict()) for comparison in result.comparisons]
    if result.audit is not None:
        lines += ["", *audit_summary_lines(result.audit.to_dict())]
    lines += [f"note: {note}" for note in result.notes]
    if out_dir is not None:
        out = Path(out_dir)
        report = out / "report.html"
        lines.append(f"results: {out / 'metrics.json'}" + (f", {report}" if report.exists() else ""))
    return lines
