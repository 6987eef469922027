"""CUDA where there is a GPU: ``--device auto|cpu|cuda`` for ONNX embedding and for pair scoring.

- ONNX models run through ONNX Runtime's CUDA execution provider (`onnx_providers`), in the batches the
  embedder already makes; it comes with ``pip install 'faceval[gpu]'`` (onnxruntime-gpu).
- dlib uses CUDA by itself when the installed dlib was built with it (``dlib.DLIB_USE_CUDA``); `dlib_cuda_note`
  says when it was not (the ``dlib-bin`` wheels are CPU-only).
- Pairs are scored and counted on the GPU with CuPy (`DevicePairs`, also in the ``gpu`` extra): the same tile
  code as the CPU (`faceval.models.scoring.block_scores` with CuPy as its array module), in tiles sized to the card's
  free memory, feeding the same states (`faceval.stats.accumulators`); each tile's pairs are worked out once and scored
  by every model of the pass. The scale engine's lattice counts
  (`faceval.stats.lattice.LatticeCounts`) place and count each tile's scores on the card, with the lattice's own cell
  rule, and take only the counts of the occupied cells to the host; any other state gets host copies of each
  tile's pairs. With numpy as the array module the same code runs on the CPU, which is how it is tested where no
  GPU is lent.

GPU scores come from cuBLAS, whose float64 sums round differently from the CPU's BLAS: a score may differ from
the CPU path by a few units in the last place (tests allow ``SCORE_TOLERANCE``), so counts are identical where
the scores are, and otherwise differ only for pairs within that tolerance of a threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from faceval.errors import InputError
from faceval.models.embedders import DEVICES
from faceval.models.scoring import ScoredPairs, Similarity, block_scores, prepare_rows, tile_rows
from faceval.stats.accumulators import A, Feed, FeedEach, ModelFeed, States, update_counts
from faceval.stats.lattice import LatticeCounts

# Largest difference between a GPU and a CPU float64 score of unit-scale vectors that the tests accept.
SCORE_TOLERANCE = 1e-12
# Bytes of device memory per element of a score tile: the tile, its masks, the pairs taken out of it, and a
# lattice state's temporaries while it counts them; and per element for each further model of the pass (its
# scores taken out of its tile, which is scored after the previous model's is let go).
_BYTES_PER_TILE_ELEMENT = 64
_BYTES_PER_MORE_MODEL_ELEMENT = 8
# Share of the card's free memory a tile may use (the rest: vectors, the state, CuPy's pool slack).
_FREE_MEMORY_SHARE = 0.5


def cupy_or_none() -> Any:
    """The CuPy module when it is installed and sees a CUDA GPU, else None."""
    try:
        import cupy
    except ImportError:
        return None
    try:
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # CuPy raises its own CUDARuntimeError when there is no driver
        return None


def scoring_array_module(device: str) -> Any:
    """The array module pairs are scored with: numpy for ``cpu``, CuPy for ``cuda`` (``auto``: CuPy where it
    sees a GPU). ``cuda`` without CuPy or a GPU raises `InputError` saying how to get them."""
    if device not in DEVICES:
        raise InputError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        return np
    cupy = cupy_or_none()
    if cupy is None and device == "cuda":
        raise InputError(
            "--device cuda: CuPy finds no CUDA GPU (install the extra: pip install 'faceval[gpu]', and check "
            "nvidia-smi); use --device cpu or auto"
        )
    return cupy or np


def dlib_cuda_note(device: str) -> str | None:
    """A note when a GPU was asked for but the installed dlib cannot use one (None when all is as asked)."""
    if device == "cpu":
        return None
    import dlib

    if getattr(dlib, "DLIB_USE_CUDA", False):
        return None
    if device == "auto" and cupy_or_none() is None:
        return None  # no GPU here anyway: nothing to say
    return (
        "dlib runs on the CPU: the installed dlib was built without CUDA (dlib.DLIB_USE_CUDA is False); "
        "build dlib with CUDA to run its detector and descriptor on the GPU"
    )


def _host(array: Any) -> np.ndarray:
    return array.get() if hasattr(array, "get") else array


def device_tile_rows(n: int, xp: Any, max_bytes: int | None = None, n_models: int = 1) -> int:
    """Rows per tile: the CPU's tiles with numpy (same shapes, same scores to the last bit); on a GPU as many
    rows as fit in ``max_bytes`` (default: half the card's free memory) for ``n_models`` models' scores."""
    if xp is np and max_bytes is None:
        return tile_rows(n)
    if max_bytes is None:
        free, _ = xp.cuda.runtime.memGetInfo()
        max_bytes = int(free * _FREE_MEMORY_SHARE)
    per_element = _BYTES_PER_TILE_ELEMENT + _BYTES_PER_MORE_MODEL_ELEMENT * (n_models - 1)
    return max(1, int(max_bytes) // (per_element * max(n - 1, 1)))


def _parts(state: Any, feed: Feed[Any]) -> list[tuple[Any, Feed[Any]]]:
    """The states of a pass with their own feeds (`States` taken apart)."""
    if isinstance(state, States) and isinstance(feed, FeedEach):
        return [part for inner in zip(state.parts, feed.feeds, strict=True) for part in _parts(*inner)]
    return [(state, feed)]


def _counts_on_device(state: Any, feed: Feed[Any]) -> bool:
    """Lattice counts of one model: placed and counted where the scores are."""
    return isinstance(state, LatticeCounts) and isinstance(feed, ModelFeed) and feed.feed is update_counts


class DevicePairs:
    """All pairs of the images scored by every model (``models``: one ``(vectors, similarity)`` each) on a device
    in tiles, as a `faceval.stats.accumulators.PairFeed`.

    ``xp`` is CuPy (or numpy: the same code on the CPU); ``max_bytes`` bounds a tile's device memory.
    Pairs reach the state in the order of `faceval.models.scoring.iter_scored_pairs`.
    """

    def __init__(
        self,
        models: Sequence[tuple[np.ndarray, Similarity]],
        identities: np.ndarray,
        xp: Any = np,
        progress: bool = False,
        label: str = "",
        max_bytes: int | None = None,
    ) -> None:
        self.models = [
            (np.asarray(vectors, dtype=np.float64), Similarity(similarity)) for vectors, similarity in models
        ]
        self.prepared = [prepare_rows(vectors, similarity, "vectors") for vectors, similarity in self.models]
        self.identities = np.asarray(identities)
        self.xp = xp
        self.progress = progress
        self.label = label
        self.rows_per_tile = device_tile_rows(len(self.identities), xp, max_bytes, len(self.models))

    def accumulate(self, new: Callable[[], A], feed: Feed[A]) -> A:
        xp = self.xp
        state = new()
        parts = _parts(state, feed)
        # Lattice counts are placed and counted where the scores are; other states get the pairs on the host.
        on_device = [part for part in parts if _counts_on_device(*part)]
        on_host = [part for part in parts if not _counts_on_device(*part)]
        n = len(self.identities)
        prepared = [(xp.asarray(rows), xp.asarray(squared_norms)) for rows, squared_norms in self.prepared]
        identities = xp.asarray(self.identities)
        columns = xp.arange(n, dtype=xp.int64)
        where = "CPU" if xp is np else "GPU"
        description = f"scoring pairs on {where} ({self.label})" if self.label else f"scoring pairs on {where}"
        with tqdm(
            total=n * (n - 1) // 2, desc=description, unit="pair", unit_scale=True, disable=not self.progress
        ) as bar:
            for lo in range(0, max(n - 1, 0), self.rows_per_tile):
                # Same tiles as iter_scored_pairs: rows [lo, hi) against every row after lo; the pairs once.
                hi = min(lo + self.rows_per_tile, n)
                first = columns[lo:hi, None]
                second = columns[None, lo + 1 :]
                upper = second > first
                scores = []
                for (rows, squared_norms), (_, similarity) in zip(prepared, self.models, strict=True):
                    tile = block_scores(
                        rows[lo:hi], squared_norms[lo:hi], rows[lo + 1 :], squared_norms[lo + 1 :], similarity, xp
                    )
                    scores.append(tile[upper])
                    del tile
                genuine = (identities[lo:hi, None] == identities[None, lo + 1 :])[upper]
                for counts, model_feed in on_device:
                    counts.update(scores[model_feed.index], genuine, xp)
                if on_host:
                    pairs = ScoredPairs(
                        _host(xp.broadcast_to(first, upper.shape)[upper]),
                        _host(xp.broadcast_to(second, upper.shape)[upper]),
                        _host(genuine),
                        tuple(_host(model_scores) for model_scores in scores),
                    )
                    for part_state, part_feed in on_host:
                        part_feed(part_state, pairs)
                del upper, scores
                bar.update(int(genuine.shape[0]))
        return state


def device_pairs(device: str) -> Callable[..., DevicePairs]:
    """A `faceval.compute.local.PairFeedFactory` scoring on ``device`` (``cuda``, or ``auto`` resolved to it)."""
    xp = scoring_array_module(device)

    def factory(
        models: Sequence[tuple[np.ndarray, Similarity]], identities: np.ndarray, progress: bool = False, label: str = ""
    ) -> DevicePairs:
        return DevicePairs(models, identities, xp, progress, label)

    return factory
