"""Figures drawn in a forked process: the same files as drawn here, errors raised in the parent, a clean end."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from faceval.atomic import atomic_write
from faceval.errors import ResultWriteError
from faceval.output import plots
from faceval.output.figure_process import FigureProcess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the figure process forks on Linux only")


def curves() -> list[plots.Curve]:
    fmr = np.linspace(0, 1, 2001)
    return [plots.Curve("model (AUC = 0.900)", fmr, fmr**0.2), plots.Curve("other", fmr, fmr**0.5)]


class Unpicklable(Exception):
    def __init__(self, message, extra):
        super().__init__(message)  # pickling calls Unpicklable(message): one argument short


def fail_with(kind: str) -> None:
    if kind == "write":
        raise ResultWriteError("out/roc.png: cannot be written (No space left on device)")
    raise Unpicklable("an odd error", 1)


def test_the_child_draws_the_same_files_as_this_process(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    for folder in (here, there):
        folder.mkdir()
    plots.plot_roc(curves(), here / "roc.png")
    plots.plot_det(curves(), here / "det.png")
    with FigureProcess(background=True) as figures:
        assert figures.background
        roc = figures.submit(plots.plot_roc, curves(), there / "roc.png")
        det = figures.submit(plots.plot_det, curves(), there / "det.png")
        pid = figures.submit(os.getpid)
        figures.wait()
    assert roc.result() == there / "roc.png" and det.result() == there / "det.png"
    assert pid.result() != os.getpid()
    for name in ("roc.png", "det.png"):
        assert (here / name).read_bytes() == (there / name).read_bytes()


def test_a_failing_job_raises_in_the_parent_after_the_others_are_done(tmp_path):
    with FigureProcess(background=True) as figures:
        failed = figures.submit(fail_with, "write")
        drawn = figures.submit(plots.plot_roc, curves(), tmp_path / "roc.png")
        with pytest.raises(ResultWriteError, match="No space left on device") as raised:
            figures.wait()
        assert "(in the figure process)" in raised.value.__notes__[0]
        assert drawn.result() == tmp_path / "roc.png" and isinstance(failed.exception(), ResultWriteError)
        # An exception that cannot cross the pipe arrives as a RuntimeError with its type and text.
        figures.submit(fail_with, "odd")
        with pytest.raises(RuntimeError, match="Unpicklable: an odd error"):
            figures.wait()
        # So does a result that cannot cross it.
        figures.submit(threading.Lock)
        with pytest.raises(TypeError, match="cannot pickle"):
            figures.wait()
        # The process goes on serving jobs after a failure.
        served = figures.submit(os.getpid)
        figures.wait()
        assert served.result() not in (None, os.getpid())


def test_the_child_ignores_ctrl_c_and_ends_when_closed():
    figures = FigureProcess(background=True)
    child = figures.submit(os.getpid)
    figures.wait()
    os.kill(child.result(), signal.SIGINT)  # as a terminal's Ctrl-C reaches the whole process group
    again = figures.submit(os.getpid)
    figures.wait()
    assert again.result() == child.result()
    figures.close()
    with pytest.raises(ProcessLookupError):
        os.kill(child.result(), 0)


def ended(pid: int) -> bool:
    """Whether process ``pid`` is gone (or a zombie: a container's init may not reap orphans)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_the_child_ends_when_the_parent_is_killed(tmp_path):
    parent = subprocess.run(
        [sys.executable, "-c", "import os; from faceval.output.figure_process import FigureProcess; "
         "f = FigureProcess(); p = f.submit(os.getpid); f.wait(); print(p.result(), flush=True); os._exit(9)"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    child = int(parent.stdout)
    deadline = time.monotonic() + 20
    while not ended(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ended(child)


def write_slowly(path: Path, started: Path) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(b"half a figure")
        started.touch()
        time.sleep(30)


def test_a_stopped_child_leaves_no_partial_file(tmp_path):
    with pytest.raises(KeyboardInterrupt), FigureProcess(background=True) as figures:
        figures.submit(write_slowly, tmp_path / "roc.png", tmp_path / "started")
        while not (tmp_path / "started").exists():
            time.sleep(0.05)
        raise KeyboardInterrupt  # the command is interrupted while the child writes
    assert sorted(path.name for path in tmp_path.iterdir()) == ["started"]


def test_without_the_child_jobs_run_here_at_wait(tmp_path):
    figures = FigureProcess(background=False)
    assert not figures.background
    failed = figures.submit(fail_with, "write")
    here = figures.submit(os.getpid)
    assert not here.done()  # the files written before `wait` come first, as with the child
    with pytest.raises(ResultWriteError):
        figures.wait()
    assert here.result() == os.getpid() and isinstance(failed.exception(), ResultWriteError)
    figures.close()


def test_a_process_with_other_threads_draws_here_rather_than_fork(tmp_path):
    release = threading.Event()
    host = threading.Thread(target=release.wait)  # a host's thread, as a Jupyter kernel has
    host.start()
    try:
        with FigureProcess() as figures:  # the default: fork only without other threads
            assert not figures.background
            drawn = figures.submit(plots.plot_roc, curves(), tmp_path / "roc.png")
            figures.wait()
        assert drawn.result() == tmp_path / "roc.png" and (tmp_path / "roc.png").stat().st_size > 0
    finally:
        release.set()
        host.join()


def test_a_child_that_dies_is_a_write_error_naming_what_is_kept_not_a_bug(tmp_path):
    with FigureProcess(background=True) as figures:
        pid = figures.submit(os.getpid)
        figures.wait()
        figures.submit(time.sleep, 60)
        os.kill(pid.result(), signal.SIGKILL)  # as the out-of-memory killer would
        with pytest.raises(ResultWriteError, match=r"figure process ended .* metrics\.json and the tables are written"):
            figures.wait()
