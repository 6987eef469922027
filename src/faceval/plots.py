"""PNG figures: ROC (linear and log FMR), DET, the seed's metrics-versus-threshold figure, score histograms.

Every function takes plain arrays and a path, so the figures can be drawn from saved results too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm

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


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)
    return path


def plot_roc(curves: Sequence[Curve], path: Path, log_fmr: bool = False, title: str = "ROC") -> Path:
    """ROC curves, TMR against FMR; with ``log_fmr`` the FMR axis is logarithmic (where operating points live)."""
    figure, axes = plt.subplots(figsize=(6.4, 5.2))
    for curve in curves:
        fmr, tmr = _thin(curve.fmr, curve.tmr)
        if log_fmr:
            positive = fmr > 0
            fmr, tmr = fmr[positive], tmr[positive]
        axes.plot(fmr, tmr, label=curve.label, linewidth=1.5)
    if log_fmr:
        axes.set_xscale("log")
        axes.set_xlabel("False match rate (FMR, log scale)")
    else:
        axes.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
        axes.set_xlim(0, 1)
        axes.set_xlabel("False match rate (FMR)")
    axes.set_ylim(0, 1.01)
    axes.set_ylabel("True match rate (TMR = 1 - FNMR)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    return _save(figure, path)


def plot_det(curves: Sequence[Curve], path: Path, title: str = "DET") -> Path:
    """DET curves: FNMR against FMR on normal-deviate (probit) axes, as in NIST and ISO/IEC 19795-1 reports."""
    ticks = np.array([1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5])
    limit = 1e-6
    figure, axes = plt.subplots(figsize=(6.4, 5.2))
    for curve in curves:
        fmr, tmr = _thin(curve.fmr, curve.tmr)
        fnmr = 1.0 - tmr
        axes.plot(
            norm.ppf(np.clip(fmr, limit, 1 - limit)),
            norm.ppf(np.clip(fnmr, limit, 1 - limit)),
            label=curve.label,
            linewidth=1.5,
        )
    positions = norm.ppf(ticks)
    labels = [f"{tick:g}" for tick in ticks]
    axes.set_xticks(positions, labels)
    axes.set_yticks(positions, labels)
    axes.set_xlim(norm.ppf(limit), norm.ppf(0.5))
    axes.set_ylim(norm.ppf(limit), norm.ppf(0.5))
    axes.set_xlabel("False match rate (FMR)")
    axes.set_ylabel("False non-match rate (FNMR)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper right", fontsize="small")
    return _save(figure, path)


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
    axes.set_xlabel(f"Threshold ({units})")
    axes.set_ylabel("Value")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


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
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    bins = np.histogram_bin_edges(scores, bins=min(100, max(10, len(scores))))
    for counts, label, colour in (
        (genuine_counts, "genuine (same person)", "tab:green"),
        (impostor_counts, "impostor (different people)", "tab:red"),
    ):
        if counts.sum() > 0:
            axes.hist(scores, bins=bins, weights=counts, density=True, alpha=0.45, color=colour, label=label)
    colours = ["black", "tab:blue", "tab:purple", "tab:orange", "tab:brown"]
    for (label, value), colour in zip(markers.items(), colours, strict=False):
        axes.axvline(value, color=colour, linestyle="--", linewidth=1.2, label=f"{label}: {value:.4g}")
    axes.set_xlabel(f"Score ({units})")
    axes.set_ylabel("Density")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)
