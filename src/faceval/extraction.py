"""Embedding every image of a dataset with one model, keeping each image's outcome (vector or failure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from faceval.datasets import Dataset, ImageRecord
from faceval.embedders import Embedder, EmbeddingResult
from faceval.images import ImageLoadError, load_rgb
from faceval.scoring import Similarity


@dataclass(frozen=True)
class EmbeddingSet:
    """One model's outcome for every record of a dataset, in the dataset's order."""

    model: str
    similarity: Similarity
    description: dict[str, Any]
    results: tuple[EmbeddingResult, ...]

    @property
    def embedded(self) -> np.ndarray:
        """Boolean mask over the dataset's records: True where the model produced a vector."""
        return np.fromiter((result.ok for result in self.results), dtype=bool, count=len(self.results))

    @property
    def n_failed(self) -> int:
        return int((~self.embedded).sum())

    def vectors(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The vectors of the given record indices, stacked (every index must be embedded)."""
        return np.stack([self.results[index].vector for index in indices]).astype(np.float64, copy=False)


def embed_record(embedder: Embedder, record: ImageRecord) -> EmbeddingResult:
    """Load and embed one image; an unreadable file becomes a failure, never an exception."""
    try:
        image = load_rgb(record.path)
    except ImageLoadError as error:
        return EmbeddingResult(None, None, failure=f"unreadable: {error}")
    return embedder.embed(image)


def extract_embeddings(dataset: Dataset, embedder: Embedder, progress: bool = True) -> EmbeddingSet:
    """Embed every image of ``dataset`` with ``embedder``, one after another."""
    results = [
        embed_record(embedder, record)
        for record in tqdm(dataset.records, desc=f"embedding ({embedder.name})", unit="img", disable=not progress)
    ]
    return EmbeddingSet(embedder.name, embedder.similarity, embedder.describe(), tuple(results))
