"""Where the work runs: this machine's processes, a Dask cluster (``--scheduler``), a GPU (``--device``).

`open_engine` turns the user's choice into what the pipeline needs: the workers that embed
(`faceval.models.extraction.RemoteWorkers`, or None for local processes) and the factory of the `PairFeed` that scores
and counts the pairs. Dask and CuPy are imported only when asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from faceval.compute.local import PairFeedFactory, local_pairs
from faceval.models.extraction import RemoteWorkers


@dataclass(frozen=True)
class EngineOptions:
    """``scheduler``: a Dask scheduler's address or ``local:N``; ``device``: ``auto``, ``cpu`` or ``cuda``."""

    scheduler: str | None = None
    device: str = "auto"


@dataclass
class Engine:
    """The embedding workers (None: local processes), the pair scoring, and what the user should know."""

    workers: RemoteWorkers | None = None
    pair_feed: PairFeedFactory = local_pairs
    notes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def open_engine(options: EngineOptions | None, scoring: bool = True) -> Iterator[Engine]:
    """The engine for ``options``, its cluster (if any) closed on exit.

    With a scheduler, pairs are scored on the cluster's CPUs (``--device`` then applies to the workers' ONNX
    models); without one, on the GPU when ``device`` is ``cuda`` (or ``auto`` and CuPy sees one). Without
    ``scoring`` (``faceval embed``) CuPy is neither needed nor looked for.
    """
    options = options or EngineOptions()
    if options.scheduler is not None:
        from faceval.compute.distributed import DaskWorkers, connect, dask_pairs

        with connect(options.scheduler) as client:
            yield Engine(DaskWorkers(client), dask_pairs(client))
        return
    from faceval.compute.gpu import device_pairs, scoring_array_module

    on_gpu = scoring and scoring_array_module(options.device) is not np
    yield Engine(None, device_pairs(options.device) if on_gpu else local_pairs)
