"""Plots on log-FMR axes keep the tail of the ROC on large sets."""

import matplotlib.pyplot
import numpy as np
import pytest
from scipy.special import ndtr

from faceval.output import plots


@pytest.mark.parametrize("draw", ["roc_log", "det"])
def test_log_fmr_plots_keep_every_point_of_the_last_decades(tmp_path, monkeypatch, draw):
    # A ROC of a million impostors: FMR steps of 1e-6, TMR rising with it.
    fmr = np.arange(1_000_001) / 1_000_000
    tmr = np.sqrt(fmr)
    drawn = []
    subplots = matplotlib.pyplot.subplots

    def capture(*args, **kwargs):
        figure, axes = subplots(*args, **kwargs)
        drawn.append(axes)
        return figure, axes

    monkeypatch.setattr(matplotlib.pyplot, "subplots", capture)
    curve = plots.Curve("model", fmr, tmr)
    if draw == "roc_log":
        plots.plot_roc([curve], tmp_path / "roc_log.png", log_fmr=True)
        x = drawn[0].lines[0].get_xdata()
    else:
        plots.plot_det([curve], tmp_path / "det.png")
        x = ndtr(drawn[0].lines[0].get_xdata())
    # Every one of the 100 smallest positive FMRs (1e-6 .. 1e-4) is drawn, and the whole curve stays small.
    assert np.all(np.isin(np.round(fmr[1:101] * 1e6), np.round(np.asarray(x) * 1e6)))
    assert len(x) < 2 * plots.MAX_POINTS
    # Evenly in log FMR: each decade above the tail gets a share of the points.
    decades = np.histogram(np.log10(np.asarray(x)[np.asarray(x) > 1e-4]), bins=[-4, -3, -2, -1, 0])[0]
    assert decades.min() > plots.MAX_POINTS / 10
