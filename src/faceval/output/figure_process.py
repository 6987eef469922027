"""Figures drawn in a second process, started with the command, so that they cost little of its time.

matplotlib's import and first figure (fonts, caches) take about half a second, and the figures of a run another
third: as long as the statistics on a few hundred thousand pairs. `FigureProcess` forks when a command starts,
and the child imports matplotlib and draws a throw-away figure while the parent loads the data and computes the
statistics (the two run on two cores). Then `FigureProcess.submit` sends the child each drawing job (a module-level
function and its arguments, pickled); `FigureProcess.wait` returns once every job is drawn, and raises the first
job's error as the parent's own.

The child is forked before the command starts any thread of its own; it ignores Ctrl-C (the parent decides what
stops: on an error it ends the child, which removes a file it was writing) and ends when the parent closes it or
exits, however the parent ends. Elsewhere than on Linux (Windows has no ``fork``, macOS's system libraries are not
safe to fork), in a process that already runs other Python threads, or with ``background=False``, the jobs run in
this process at `FigureProcess.wait`: the same files, drawn one after the other.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import queue
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from types import TracebackType
from typing import Any

from faceval.errors import ResultWriteError

# How long a closing parent waits for the child to end before it stops it.
_JOIN_SECONDS = 5.0


class FigureProcess:
    """Drawing jobs run by a forked child process (see the module's documentation), or here without ``fork``."""

    def __init__(self, background: bool | None = None) -> None:
        """``background``: True forks (on Linux), False draws here; None forks only from a process with no other
        Python thread, since a thread of a host (a Jupyter kernel, a test runner) could hold a lock at the fork
        that the child would then wait on forever."""
        self._sent: list[Future[Any]] = []  # jobs in the child, in order
        self._deferred: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        self._process: multiprocessing.process.BaseProcess | None = None
        if background is None:
            background = threading.active_count() == 1
        # fork on Linux only: macOS's system libraries are not fork-safe (Python's own default there is spawn).
        if not background or not sys.platform.startswith("linux"):
            return
        context = multiprocessing.get_context("fork")
        jobs_in, self._jobs = context.Pipe(duplex=False)
        self._replies, replies_out = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_serve, args=(jobs_in, replies_out, self._jobs, self._replies), name="faceval-figures", daemon=True
        )
        with warnings.catch_warnings():
            # Python >= 3.12 warns about forking a multi-threaded process: the only other threads are numpy's BLAS
            # pool, which OpenBLAS shuts down around a fork, and the child draws figures only.
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            self._process.start()
        jobs_in.close()
        replies_out.close()
        # A job is pickled here when submitted and sent by a thread: a large job waits in the pipe until the child
        # is done with the one before, and the tables are written meanwhile.
        self._outbox: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send, name="faceval-figures-sender", daemon=True)
        self._sender.start()

    def _send(self) -> None:
        while (job := self._outbox.get()) is not None:
            try:
                self._jobs.send_bytes(job)
            except (OSError, ValueError):  # the child is gone, or the pipe closed: `wait` says so
                return

    @property
    def background(self) -> bool:
        """Whether the jobs run in the child process."""
        return self._process is not None

    def submit(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Draw: ``function(*args, **kwargs)`` in the child, its result in the returned future after `wait`.

        ``function`` must be importable by name (a module's function) and its arguments picklable; its result
        should be small (a file name or a few): the child sends it back while the parent may be sending the next
        job. Without the child the job waits for `wait`, so that the files written meanwhile come first here too.
        """
        future: Future[Any] = Future()
        if self._process is None:
            self._deferred.append((future, function, args, kwargs))
        else:
            self._outbox.put(ForkingPickler.dumps((function, args, kwargs)))
            self._sent.append(future)
        return future

    def wait(self) -> None:
        """Return when every submitted job is done (each runs, even after one failed); raise the first job's error
        (from the child: with its traceback as a note)."""
        sent, self._sent = self._sent, []
        deferred, self._deferred = self._deferred, []
        for future, function, args, kwargs in deferred:
            try:
                future.set_result(function(*args, **kwargs))
            except Exception as error:
                future.set_exception(error)
        for future in sent:
            try:
                ok, value = self._replies.recv()
            except EOFError as error:
                raise ResultWriteError(
                    "the figure process ended before drawing every figure (killed, or out of memory?); metrics.json "
                    "and the tables are written: run the command again to draw the figures"
                ) from error
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        for future in (*(future for future, *_ in deferred), *sent):
            if future.exception() is not None:
                raise future.exception()

    def close(self, stop: bool = False) -> None:
        """End the child: after its current job, or at once with ``stop`` (the command is failing anyway)."""
        if self._process is None:
            return
        if stop:
            self._process.terminate()
        self._outbox.put(None)
        self._sender.join(_JOIN_SECONDS)
        self._jobs.close()  # the child's next read ends its loop
        self._replies.close()
        self._process.join(_JOIN_SECONDS)
        if self._process.is_alive():  # pragma: no cover - a job stuck for seconds
            self._process.kill()
            self._process.join()
        self._process = None

    def __enter__(self) -> FigureProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close(stop=error is not None)


def _serve(jobs: Connection, replies: Connection, *parent_ends: Connection) -> None:
    """The child: warm matplotlib up, then run jobs until the parent closes the pipe (or is gone)."""
    for name in ("SIGINT", "SIGHUP"):  # Ctrl-C or a closed terminal reach the whole process group: the parent decides
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    # The parent's SIGTERM when it stops: the file being written is removed (`atomic_write`) and the child ends.
    signal.signal(signal.SIGTERM, _stop)
    for end in parent_ends:  # only the parent holds its ends, so its exit is an end of file here
        end.close()
    from faceval.output import plots

    with contextlib.suppress(Exception):  # only time is at stake: a real problem fails the first real job
        plots.warm_up()
    while True:
        try:
            function, args, kwargs = jobs.recv()
        except EOFError:
            return
        try:
            reply = (True, function(*args, **kwargs))
        except Exception as error:  # sent to the parent, which raises it
            reply = (False, _portable(error))
        try:
            replies.send(reply)
        except OSError:  # the parent is gone
            return
        except Exception as error:  # a result that cannot be pickled
            replies.send((False, _portable(error)))


def _stop(number: int, frame: Any) -> None:
    raise SystemExit(128 + number)


def _portable(error: Exception) -> Exception:
    """``error`` if it survives pickling, else a RuntimeError with its text; the child's traceback as a note."""
    text = "".join(traceback.format_exception(error))
    try:
        copy = pickle.loads(pickle.dumps(error))
    except Exception:
        copy = RuntimeError(f"{type(error).__name__}: {error}")
    copy.add_note(f"(in the figure process)\n{text}")
    return copy
