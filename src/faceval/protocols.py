"""Which pairs an evaluation scores: all pairs of images (the default), a pair list, or templates and their pairs.

`load_protocol` reads and checks the files before any image is embedded (a malformed line fails in seconds);
`Protocol.restrict` keeps only the images the files name (so that only they are embedded), and `Protocol.view`
turns images into templates when templates are given. The scoring itself stays in `faceval.evaluation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceval.compute.local import PairFeedFactory, local_pairs
from faceval.errors import InputError
from faceval.evaluation import evaluate_embeddings
from faceval.models.extraction import EmbeddingSet
from faceval.models.templates import TemplateList, read_templates, template_view
from faceval.output.results import Evaluation
from faceval.sources.datasets import Dataset
from faceval.stats.groups import GroupOptions
from faceval.stats.pair_lists import PairList, read_pair_list, restrict_to_listed


@dataclass(frozen=True)
class ProtocolRequest:
    """``--pairs``, ``--templates``, ``--template-pairs`` and ``--save-scores`` as asked."""

    pairs: str | Path | None = None
    templates: str | Path | None = None
    template_pairs: str | Path | None = None
    save_scores: bool = False


@dataclass(frozen=True)
class Protocol:
    """The files of a `ProtocolRequest`, read and checked."""

    pairs: PairList | None = None
    templates: TemplateList | None = None
    save_scores: bool = False

    def restrict(self, dataset: Dataset) -> tuple[Dataset, list[str]]:
        """Only the images the pair list or templates name, with a note of how many others are left out."""
        keys = self.templates.keys if self.templates is not None else self.pairs.keys if self.pairs else None
        if keys is None:
            return dataset, []
        kept = restrict_to_listed(dataset, keys)
        left_out = dataset.n_images - kept.n_images
        source = (self.templates or self.pairs).source  # type: ignore[union-attr]
        return kept, [
            f"{left_out} images of the dataset are not named in {source} and are not used"
        ] if left_out else []

    def view(
        self, dataset: Dataset, embedding_sets: Sequence[EmbeddingSet], groups: np.ndarray | None
    ) -> tuple[Dataset, list[EmbeddingSet], np.ndarray | None, dict[str, Any] | None]:
        """Templates in place of images when templates are given (with their summary), else everything as it is."""
        if self.templates is None:
            return dataset, list(embedding_sets), groups, None
        return template_view(dataset, embedding_sets, self.templates, groups)


def load_protocol(request: ProtocolRequest) -> Protocol:
    """Read the pair list or the templates (and their pairs); every problem is raised now, before any embedding."""
    if request.template_pairs is not None and request.templates is None:
        raise InputError("--template-pairs needs --templates FILE (which images form each template)")
    if request.pairs is not None and request.templates is not None:
        raise InputError("--pairs lists image pairs; with --templates give the template pairs as --template-pairs")
    if request.templates is not None:
        templates = read_templates(request.templates)
        pairs = None
        if request.template_pairs is not None:
            pairs = read_pair_list(request.template_pairs, columns=("template_a", "template_b"))
        return Protocol(pairs, templates, request.save_scores)
    pairs = None if request.pairs is None else read_pair_list(request.pairs)
    return Protocol(pairs, None, request.save_scores)


def evaluate_protocol(
    protocol: Protocol,
    dataset: Dataset,
    embedding_sets: Sequence[EmbeddingSet],
    groups: np.ndarray | None,
    options: Mapping[str, GroupOptions],
    group_by: Sequence[str],
    out_dir: str | Path | None,
    progress: bool = False,
    pair_feed: PairFeedFactory = local_pairs,
) -> Evaluation:
    """`evaluate_embeddings` on the protocol's pairs: templates in place of images when it has templates;
    ``--save-scores`` files go into ``out_dir``; ``pair_feed`` scores all pairs (a Dask cluster, a GPU)."""
    if protocol.save_scores and out_dir is None:
        raise ValueError("saving the scores needs an output folder")
    scored, scored_sets, scored_groups, templates = protocol.view(dataset, embedding_sets, groups)
    evaluation = evaluate_embeddings(
        scored,
        scored_sets,
        scored_groups,
        options,
        group_by,
        progress=progress,
        pairs=protocol.pairs,
        save_scores=Path(out_dir) if protocol.save_scores and out_dir is not None else None,
        pair_feed=pair_feed,
    )
    if templates is not None:
        evaluation.dataset["templates"] = templates
    return evaluation
