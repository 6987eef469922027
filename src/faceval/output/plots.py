"""PNG figures: ROC (linear and log FMR), DET, the seed's metrics-versus-threshold figure, score histograms.

Every function takes plain arrays and a path, so the figures can be drawn from saved results too.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

from faceval.atomic import atomic_write

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

# Plotting a million-point curve only costs time: the eye cannot see more than a few thousand points.
MAX_POINTS = 5000
_DPI = 120


@dataclass(frozen=True)
class Curve:
    """One model's (or group's) ROC: FMR and TMR at each threshold, with its label for the legend."""

    label: str
    fmr: np.ndarray
    tmr: np.ndarray


def _thin(*arrays: np.ndarray) -> list[np.ndarray]:
    """Keep at most MAX_POINTS evenly spaced points, always including the ends."""
    size = len(arrays[0])
    if size <= MAX_POINTS:
        return list(arrays)
    keep = np.unique(np.linspace(0, size - 1, MAX_POINTS).round().astype(np.int64))
    return [array[keep] for array in arrays]


def thin_log_fmr(fmr: np.ndarray, *arrays: np.ndarray, tail: int = 100) -> list[np.ndarray]:
    """For log-FMR axes: the points with FMR > 0, thinned evenly in log FMR to about MAX_POINTS, keeping every
    point whose FMR is below ``tail`` times the smallest positive FMR (the last two decades, where each point is a
    few impostors and every step shows). Thinning by index instead would keep almost nothing below FMR 1e-4 on a
    large set.

    >>> fmr = np.arange(1_000_001) / 1_000_000
    >>> kept, = thin_log_fmr(fmr)
    >>> kept.size < 2 * MAX_POINTS, kept[:3].tolist(), bool(np.all(np.isin(fmr[1:101], kept)))
    (True, [1e-06, 2e-06, 3e-06], True)
    """
    positive = np.flatnonzero(fmr > 0)
    if positive.size <= MAX_POINTS:
        return [fmr[positive], *(array[positive] for array in arrays)]
    logs = np.log10(fmr[positive])
    # FMR never decreases along a ROC, so grid positions map to indices by binary search.
    grid = np.linspace(logs[0], logs[-1], MAX_POINTS)
    keep = np.searchsorted(logs, grid)
    smallest = fmr[positive[0]]
    keep = np.unique(np.concatenate((keep, np.flatnonzero(fmr[positive] < tail * smallest), [positive.size - 1])))
    rows = positive[keep]
    return [fmr[rows], *(array[rows] for array in arrays)]


def _pyplot():  # type: ignore[no-untyped-def]
    """matplotlib.pyplot on first use: its import costs most of a second that commands drawing nothing never pay."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot

    from faceval.output.fonts import use_cjk_fonts

    use_cjk_fonts()  # group and identity names in Japanese, Chinese or Korean (registered once)
    return matplotlib.pyplot


def warm_up() -> None:
    """Import matplotlib and draw a small figure with text and a log axis into memory: fonts loaded, caches
    filled, so that the first real figure costs what the next ones do (`faceval.output.figure_process` calls this while
    the statistics run)."""
    plt = _pyplot()
    figure, axes = plt.subplots()
    axes.plot([1e-6, 1.0], [0.0, 1.0], label="warm-up")
    axes.set_xscale("log")
    _label(axes, "FMR", "TMR", "warm-up")
    try:
        figure.savefig(io.BytesIO(), dpi=_DPI, format="png")
    finally:
        plt.close(figure)


# Normal deviates from the standard library: a DET curve has a few thousand points, and importing scipy for them
# would cost more than drawing them.
_normal_deviate = np.frompyfunc(NormalDist().inv_cdf, 1, 1)


def _probit(values: np.ndarray) -> np.ndarray:
    """Normal deviates of probabilities in (0, 1) (DET axes).

    >>> _probit(np.array([0.5, 0.975])).round(4).tolist()
    [0.0, 1.96]
    """
    return np.asarray(_normal_deviate(np.asarray(values, dtype=np.float64)), dtype=np.float64)


def _label(axes: plt.Axes, xlabel: str, ylabel: str, title: str, legend: str = "best") -> None:
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc=legend, fontsize="small")


# Histograms as one filled outline per series, not one rectangle per bin: the same pixels (the bars touch and have no
# edges), drawn in half the time.
_FILLED = "stepfilled"

# Margins (figure fractions) of the figures whose labels keep their size whatever the data: the ones tight_layout
# finds for them, fixed, because measuring every label costs tight_layout up to a tenth of a second per figure.
_ROC_MARGINS = {"left": 0.104, "right": 0.959, "bottom": 0.113, "top": 0.931}
_ROC_LOG_MARGINS = {"left": 0.104, "right": 0.977, "bottom": 0.117, "top": 0.930}
_DET_MARGINS = {"left": 0.146, "right": 0.959, "bottom": 0.113, "top": 0.931}
_THRESHOLD_MARGINS = {"left": 0.104, "right": 0.977, "bottom": 0.122, "top": 0.924}


def _save(figure: plt.Figure, path: Path, margins: dict[str, float] | None = None) -> Path:
    """Write ``figure`` to ``path`` (atomically) and close it; ``margins`` fixed, else measured (tight_layout)."""
    try:
        if margins is None:
            figure.tight_layout()
        else:
            figure.subplots_adjust(**margins)
        with atomic_write(path, "wb") as handle:
            figure.savefig(handle, dpi=_DPI, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        _pyplot().close(figure)
    return path


def plot_roc(curves: Sequence[Curve], path: Path, log_fmr: bool = False, title: str = "ROC") -> Path:
    """ROC curves, TMR against FMR; with ``log_fmr`` the FMR axis is logarithmic (where operating points live)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 5.2))
    for curve in curves:
        fmr, tmr = thin_log_fmr(curve.fmr, curve.tmr) if log_fmr else _thin(curve.fmr, curve.tmr)
        axes.plot(fmr, tmr, label=curve.label, linewidth=1.5)
    if log_fmr:
        axes.set_xscale("log")
    else:
        axes.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
        axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    xlabel = "False match rate (FMR, log scale)" if log_fmr else "False match rate (FMR)"
    _label(axes, xlabel, "True match rate (TMR = 1 - FNMR)", title, legend="lower right")
    return _save(figure, path, _ROC_LOG_MARGINS if log_fmr else _ROC_MARGINS)


def plot_det(curves: Sequence[Curve], path: Path, title: str = "DET") -> Path:
    """DET curves: FNMR against FMR on normal-deviate (probit) axes, as in NIST and ISO/IEC 19795-1 reports.

    FNMR runs up to 0.95: at strict thresholds a model that fails a group misses most genuine pairs.
    """
    fmr_ticks = np.array([1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5])
    fnmr_ticks = np.array([1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5, 0.8, 0.95])
    limit = 1e-6
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 5.2))
    for curve in curves:
        fmr, tmr = thin_log_fmr(curve.fmr, curve.tmr)
        fnmr = 1.0 - tmr
        axes.plot(
            _probit(np.clip(fmr, limit, 1 - limit)),
            _probit(np.clip(fnmr, limit, 1 - limit)),
            label=curve.label,
            linewidth=1.5,
        )
    axes.set_xticks(_probit(fmr_ticks), [f"{tick:g}" for tick in fmr_ticks])
    axes.set_yticks(_probit(fnmr_ticks), [f"{tick:g}" for tick in fnmr_ticks])
    axes.set_xlim(_probit(limit), _probit(0.5))
    axes.set_ylim(_probit(limit), _probit(0.95))
    _label(axes, "False match rate (FMR)", "False non-match rate (FNMR)", title, legend="upper right")
    return _save(figure, path, _DET_MARGINS)


def plot_threshold_metrics(
    thresholds: np.ndarray,
    series: dict[str, np.ndarray],
    path: Path,
    units: str,
    reverse_x: bool,
    best_threshold: float | None = None,
    title: str = "Metrics versus threshold",
) -> Path:
    """The seed's figure: accuracy, precision, recall and F1 against the threshold in the model's units.

    For distances (``reverse_x``) the axis runs from large to small, as in the seed's dlib figure, so that
    stricter thresholds are to the right for every model.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    for label, values in series.items():
        axes.plot(thresholds, values, label=label, linewidth=1.5)
    if best_threshold is not None:
        axes.axvline(
            best_threshold,
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"best F1 at {best_threshold:.4g}",
        )
    low, high = float(np.min(thresholds)), float(np.max(thresholds))
    axes.set_xlim((high, low) if reverse_x else (low, high))
    axes.set_ylim(0, 1.01)
    _label(axes, f"Threshold ({units})", "Value", title)
    return _save(figure, path, _THRESHOLD_MARGINS)


def plot_score_histograms(
    scores: np.ndarray,
    genuine_counts: np.ndarray,
    impostor_counts: np.ndarray,
    path: Path,
    units: str,
    markers: dict[str, float],
    title: str = "Score distributions",
) -> Path:
    """Genuine and impostor score densities (from per-score counts) with thresholds marked in model units."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    bins = np.histogram_bin_edges(scores, bins=min(100, max(10, len(scores))))
    for counts, label, colour in (
        (genuine_counts, "genuine (same person)", "tab:green"),
        (impostor_counts, "impostor (different people)", "tab:red"),
    ):
        if counts.sum() > 0:
            axes.hist(scores, bins=bins, weights=counts, density=True, alpha=0.45, color=colour, label=label,
                      histtype=_FILLED)  # fmt: skip
    colours = ["black", "tab:blue", "tab:purple", "tab:orange", "tab:brown"]
    for (label, value), colour in zip(markers.items(), colours, strict=False):
        axes.axvline(value, color=colour, linestyle="--", linewidth=1.2, label=f"{label}: {value:.4g}")
    _label(axes, f"Score ({units})", "Density", title)
    return _save(figure, path)


def plot_group_rates(
    names: Sequence[str],
    fnmr: Sequence[float | None],
    fnmr_ci: Sequence[Sequence[float] | None],
    fmr: Sequence[float | None],
    fmr_ci: Sequence[Sequence[float] | None],
    target_fmr: float,
    path: Path,
    title: str = "FNMR and FMR per group at the global threshold",
) -> Path:
    """Per group FNMR (left) and FMR (right, log scale, the target marked) at one threshold, with interval bars.

    A missing value (None) is left out; an FMR of 0 is drawn at the axis floor with a hollow marker.
    """
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 0.45 * len(names) + 2.0), sharey=True)
    # A log axis cannot show 0: zero rates sit at a floor below every positive value, drawn hollow.
    positive = [v for v in (*fmr, *(b for ci in fmr_ci if ci for b in ci)) if v is not None and v > 0]
    floor = min([target_fmr / 10, *positive]) / 2
    positions = np.arange(len(names))
    for axes, values, intervals, colour, low in (
        (left, fnmr, fnmr_ci, "tab:blue", 0.0),
        (right, fmr, fmr_ci, "tab:red", floor),
    ):
        for position, value, interval in zip(positions, values, intervals, strict=True):
            if value is None:
                continue
            if interval is not None:
                axes.plot(np.maximum(interval, low), [position, position], color=colour, linewidth=2.5, alpha=0.5)
            face = colour if value > 0 else "white"
            axes.plot([max(value, low)], [position], "o", color=colour, markerfacecolor=face)
    left.set_xlim(0, 1)
    left.set_xlabel("FNMR (share of genuine pairs rejected)")
    right.set_xscale("log")
    right.set_xlim(floor, 1)
    right.axvline(target_fmr, color="black", linestyle="--", linewidth=1, label=f"target FMR {target_fmr:g}")
    right.set_xlabel("FMR within the group (log scale)")
    right.legend(fontsize="small", loc="lower right")
    left.set_yticks(positions, list(names))
    left.invert_yaxis()
    for axes in (left, right):
        axes.grid(True, which="both", alpha=0.3)
    figure.suptitle(title, fontsize="medium")
    return _save(figure, path)


def plot_fmr_heatmap(names: Sequence[str], fmr: np.ndarray, target_fmr: float, path: Path, title: str) -> Path:
    """Cross-group FMR as log10(FMR / target): 0 (white) is the target, red above it, blue below.

    Each cell is written out; a cell without impostor pairs is blank, an FMR of 0 reads "0".
    """
    fmr = np.asarray(fmr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log10(fmr / target_fmr)
    finite = ratio[np.isfinite(ratio)]
    limit = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    shown = np.where(np.isneginf(ratio), -limit, ratio)
    size = 0.6 * len(names) + 3.0
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(np.ma.masked_invalid(shown), cmap="RdBu_r", vmin=-limit, vmax=limit)
    for row in range(len(names)):
        for column in range(len(names)):
            value = fmr[row, column]
            if np.isnan(value):
                continue
            text = "0" if value == 0 else f"{value:.2g}"
            axes.text(column, row, text, ha="center", va="center", fontsize="x-small")
    axes.set_xticks(np.arange(len(names)), list(names), rotation=45, ha="right")
    axes.set_yticks(np.arange(len(names)), list(names))
    figure.colorbar(image, ax=axes, label=f"log10(FMR / {target_fmr:g})")
    axes.set_title(title, fontsize="medium")
    return _save(figure, path)


def plot_group_histograms(
    groups: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    path: Path,
    units: str,
    markers: dict[str, float],
    title: str = "Score distributions per group",
) -> Path:
    """One panel per group: genuine and impostor score densities (from per-score counts), thresholds marked.

    ``groups`` maps a name to ``(scores in model units, genuine counts, impostor counts)``; all panels share the
    score axis so that groups can be compared by eye.
    """
    names = list(groups)
    columns = min(3, max(1, len(names)))
    rows = max(1, -(-len(names) // columns))
    plt = _pyplot()
    figure, grid = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False, sharex=True)
    every_score = np.concatenate([scores for scores, _, _ in groups.values()]) if groups else np.zeros(1)
    bins = np.histogram_bin_edges(every_score, bins=80)
    colours = ["black", "tab:blue", "tab:purple", "tab:orange"]
    for axes, name in zip(grid.ravel(), names, strict=False):
        scores, genuine, impostor = groups[name]
        for counts, label, colour in ((genuine, "genuine", "tab:green"), (impostor, "impostor", "tab:red")):
            if counts.sum() > 0:
                axes.hist(scores, bins=bins, weights=counts, density=True, alpha=0.45, color=colour, label=label,
                      histtype=_FILLED)  # fmt: skip
        for (label, value), colour in zip(markers.items(), colours, strict=False):
            axes.axvline(value, color=colour, linestyle="--", linewidth=1.1, label=f"{label}: {value:.4g}")
        axes.set_title(name, fontsize="small")
        axes.set_xlabel(f"Score ({units})", fontsize="small")
        axes.grid(True, alpha=0.3)
    for axes in grid.ravel()[len(names) :]:
        axes.set_visible(False)
    grid.ravel()[0].legend(fontsize="x-small")
    figure.suptitle(title, fontsize="medium")
    return _save(figure, path)


def plot_cmc(curves: dict[str, np.ndarray], path: Path, title: str = "CMC") -> Path:
    """Cumulative match characteristic: identification rate against rank (1, 2, ...), one curve per model."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    for label, rates in curves.items():
        ranks = np.arange(1, len(rates) + 1)
        axes.plot(ranks, rates, marker="o" if len(rates) <= 20 else None, markersize=3, label=label, linewidth=1.5)
    axes.set_xscale("log")
    axes.set_ylim(0, 1.01)
    _label(axes, "Rank (log scale)", "Identification rate (mate within rank)", title, legend="lower right")
    return _save(figure, path)


def plot_fnir_fpir(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """NIST's identification error trade-off: FNIR against FPIR (log scale), one curve per model.

    ``curves`` maps a label to ``(fpir, fnir)``; points with FPIR 0 cannot be drawn on the log axis.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    for label, (fpir, fnir) in curves.items():
        fpir, fnir = _thin(np.asarray(fpir), np.asarray(fnir))
        positive = fpir > 0
        axes.step(fpir[positive], fnir[positive], where="post", label=label, linewidth=1.5)
    axes.set_xscale("log")
    axes.set_ylim(0, 1.01)
    _label(axes, "FPIR (non-mated searches returning a candidate, log scale)", "FNIR (mated searches missed)",
           title, legend="upper right")  # fmt: skip
    return _save(figure, path)


def plot_group_figures(
    names: Sequence[str],
    panels: dict[str, tuple[Sequence[float | None], Sequence[Sequence[float] | None]]],
    path: Path,
    title: str,
) -> Path:
    """One panel per figure (e.g. rank-1, FNIR, FPIR), one row per group: the value and its interval bar."""
    plt = _pyplot()
    figure, grid = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 0.45 * len(names) + 2.0), sharey=True,
                                squeeze=False)  # fmt: skip
    positions = np.arange(len(names))
    for axes, (label, (values, intervals)), colour in zip(
        grid[0], panels.items(), ["tab:green", "tab:blue", "tab:red"], strict=False
    ):
        for position, value, interval in zip(positions, values, intervals, strict=True):
            if value is None:
                continue
            if interval is not None:
                axes.plot(interval, [position, position], color=colour, linewidth=2.5, alpha=0.5)
            axes.plot([value], [position], "o", color=colour)
        axes.set_xlim(-0.02, 1.02)
        axes.set_xlabel(label)
        axes.grid(True, alpha=0.3)
    grid[0][0].set_yticks(positions, list(names))
    grid[0][0].invert_yaxis()
    figure.suptitle(title, fontsize="medium")
    return _save(figure, path)


def plot_fpir_by_gallery_size(sizes: np.ndarray, fpir: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """FPIR at one threshold against the number of gallery identities (log scale), one line per group."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    for label, values in fpir.items():
        axes.plot(sizes, values, marker="o", markersize=3, label=label, linewidth=1.5)
    axes.set_xscale("log")
    axes.set_ylim(-0.01, 1.01)
    _label(axes, "Gallery identities (random sub-galleries, log scale)", "FPIR at the global threshold", title,
           legend="upper left")  # fmt: skip
    return _save(figure, path)
