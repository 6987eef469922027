"""faceval: how well does a face-recognition model verify your own people, and at which threshold?

The public API is three calls and the typed objects they return::

    import faceval
    result = faceval.evaluate("ROC用", models=["dlib", "sface"])   # a folder, a manifest CSV, or several folders
    result.models["dlib"].auc, result.models["dlib"].best_f1.threshold
    result.save("results/")                                        # metrics.json, CSV files, plots

    result = faceval.evaluate_embeddings(vectors, labels, metric="euclidean")

Everything else (``faceval.metrics`` for scores made elsewhere aside) is internal and may change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from faceval.results import ModelFigures, Result

__version__ = "0.1.0"
__all__ = ["ModelFigures", "Result", "__version__", "evaluate", "evaluate_embeddings"]


def evaluate(
    sources: str | Path | Sequence[str | Path],
    models: Sequence[str] = ("dlib",),
    *,
    layout: str = "auto",
    group_by: Sequence[str] = (),
    attributes: str | Path | None = None,
    target_fmr: float = 1e-3,
    thresholds: Mapping[str, float] | None = None,
    resamples: int = 1000,
    seed: int = 0,
    cache: str | Path | None = None,
    use_cache: bool = True,
    jobs: int | None = None,
    progress: bool = True,
    dlib_detector: str = "hog",
    dlib_upsample: int = 1,
    spec: str | Path | None = None,
    pairs: str | Path | None = None,
    templates: str | Path | None = None,
    template_pairs: str | Path | None = None,
    scheduler: str | None = None,
    device: str = "auto",
) -> Result:
    """Embed every image of ``sources`` with each model and measure verification over all pairs.

    ``sources``: a folder (flat ``name_001.png`` files, one sub-folder per identity, or holding ``manifest.csv``),
    a manifest CSV, or several folders (each is then a group). ``models``: ``dlib``, ``sface[:PATH]``,
    ``japanese-face:PATH``, ``arcface:PATH``, ``onnx:PATH`` (with ``spec``), as on the command line. Groups come
    from several folders, ``group_by`` manifest columns or an ``attributes`` CSV; ``thresholds`` maps a model
    name to a threshold in its own units. Embeddings are kept in the embedding store (``cache``) unless
    ``use_cache`` is False. Works from a script (no ``if __name__ == "__main__"`` guard needed), Jupyter and the
    REPL. Nothing is written until `Result.save`. ``pairs`` (LFW ``pairs.txt`` or a CSV) scores only the listed
    pairs (10-fold accuracy in ``result.to_dict()["models"][name]["ten_fold"]``); ``templates`` (with optional
    ``template_pairs``) compares templates instead of images. ``scheduler`` (a Dask scheduler's address, or
    ``"local:N"``) and ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``) say where the work runs, as ``--scheduler``
    and ``--device``.

    >>> import tempfile, numpy, PIL.Image, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> rng = numpy.random.default_rng(0)
    >>> for k in range(6):
    ...     pixels = rng.integers(0, 256, (48, 48, 3), dtype=numpy.uint8)
    ...     PIL.Image.fromarray(pixels).save(folder / f"{'ab'[k % 2]}_{k}.png")
    >>> result = evaluate(folder, dlib_detector="none", use_cache=False, progress=False, resamples=0)
    >>> dlib = result.models["dlib"]
    >>> dlib.n_images, dlib.n_genuine, dlib.n_impostor, dlib.units
    (6, 6, 9, 'distance')
    """
    from faceval.engine import EngineOptions
    from faceval.pipeline import EmbeddingOptions, EvaluationRequest, GroupRequest, evaluate_sources
    from faceval.protocols import ProtocolRequest

    if isinstance(sources, str | Path):
        sources = [sources]
    request = EvaluationRequest(
        sources=list(sources),
        models=tuple(models),
        layout=layout,
        dlib_options={"detector": dlib_detector, "upsample": dlib_upsample},
        spec_file=spec,
        embedding=EmbeddingOptions(cache, use_cache, jobs, progress=progress),
        groups=GroupRequest(
            group_by=tuple(group_by),
            attribute_csv=attributes,
            target_fmr=target_fmr,
            thresholds=dict(thresholds or {}),
            n_resamples=resamples,
            seed=seed,
        ),
        protocol=ProtocolRequest(pairs, templates, template_pairs),
        engine=EngineOptions(scheduler, device),
    )
    return evaluate_sources(request)


def evaluate_embeddings(
    vectors: Any,
    labels: Sequence[Any],
    metric: str = "euclidean",
    *,
    name: str = "embeddings",
    target_fmr: float = 1e-3,
    threshold: float | None = None,
    resamples: int = 1000,
    seed: int = 0,
    scheduler: str | None = None,
    device: str = "auto",
) -> Result:
    """The same figures from vectors made elsewhere: one row of ``vectors`` per image, ``labels`` its identity.

    ``metric``: ``"euclidean"`` (a distance: accept when ``distance <= threshold``) or ``"cosine"``.
    ``threshold`` (model units) shows what that setting does; ``resamples`` identity-bootstrap resamples give
    the 95 % intervals (0: none). ``scheduler`` and ``device``: where the pairs are scored, as in `evaluate`.

    >>> import numpy
    >>> vectors = numpy.array([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [1.0, 1.1]])
    >>> result = evaluate_embeddings(vectors, ["ann", "ann", "bob", "bob"], metric="euclidean", resamples=0)
    >>> figures = result.models["embeddings"]
    >>> figures.auc, figures.n_genuine, figures.n_impostor, figures.best_f1.threshold
    (1.0, 2, 4, 0.1)
    """
    from faceval.engine import EngineOptions
    from faceval.pipeline import GroupRequest, evaluate_vectors

    thresholds = {} if threshold is None else {name: threshold}
    request = GroupRequest(target_fmr=target_fmr, thresholds=thresholds, n_resamples=resamples, seed=seed)
    engine = EngineOptions(scheduler, device)
    return evaluate_vectors(vectors, labels, metric, name=name, groups=request, engine=engine)
