"""Every pair a run scores, saved as Parquet for other tools (``--save-scores``), as the pairs stream past.

Columns ``path1, path2, identity1, identity2, score, genuine``; the score in the model's own units (a distance for
dlib), the similarity and units in the file's metadata (``faceval.similarity``, ``faceval.units``). Paths and
identities are dictionary-encoded, so millions of pairs take little space; ``faceval scores FILE.parquet`` reads
the file back.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from faceval.models.scoring import PairChunk, Similarity

T = TypeVar("T")

# Parquet metadata key: how the saved scores compare (a distance is lower-is-better).
SIMILARITY_KEY = b"faceval.similarity"


@contextlib.contextmanager
def saving_scores(
    path: str | Path, paths: Sequence[str], identities: Sequence[str], similarity: Similarity
) -> Iterator[Callable[[PairChunk], None]]:
    """A function that appends a `PairChunk` (indices into ``paths``) to a Parquet file, which appears at ``path``
    only once every chunk is written (a temporary file renamed into place)."""
    # pyarrow loads only for runs that save scores.
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path_values = pa.array(list(paths), pa.string())
    identity_values = pa.array(list(identities), pa.string())
    schema = pa.schema(
        [
            ("path1", pa.dictionary(pa.int32(), pa.string())),
            ("path2", pa.dictionary(pa.int32(), pa.string())),
            ("identity1", pa.dictionary(pa.int32(), pa.string())),
            ("identity2", pa.dictionary(pa.int32(), pa.string())),
            ("score", pa.float64()),
            ("genuine", pa.bool_()),
        ],
        metadata={SIMILARITY_KEY: similarity.value.encode(), b"faceval.units": similarity.model_units.encode()},
    )

    def write(chunk: PairChunk) -> None:
        first, second = pa.array(chunk.first, pa.int32()), pa.array(chunk.second, pa.int32())
        columns = [
            pa.DictionaryArray.from_arrays(first, path_values),
            pa.DictionaryArray.from_arrays(second, path_values),
            pa.DictionaryArray.from_arrays(first, identity_values),
            pa.DictionaryArray.from_arrays(second, identity_values),
            pa.array(similarity.to_model_units(chunk.scores) + 0.0),
            pa.array(chunk.genuine),
        ]
        writer.write_batch(pa.record_batch(columns, schema=schema))

    try:
        with pq.ParquetWriter(temporary, schema) as writer:
            yield write
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def tee_to(chunks: Iterable[T], write: Callable[[T], None]) -> Iterator[T]:
    """Pass ``chunks`` on (one model's `PairChunk` objects, or a pass's `faceval.models.scoring.ScoredPairs`), handing
    each to ``write`` first."""
    for chunk in chunks:
        write(chunk)
        yield chunk
