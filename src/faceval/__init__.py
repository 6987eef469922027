"""faceval: how well does a face-recognition model verify your own people, and at which threshold?

The public API is four calls and the typed objects they return::

    import faceval
    result = faceval.evaluate("ROC用", models=["dlib", "sface"])   # a folder, a manifest CSV, or several folders
    result.models["dlib"].auc, result.models["dlib"].best_f1.threshold
    result.save("results/")                                        # metrics.json, CSV files, plots, report.html

    result = faceval.evaluate_embeddings(vectors, labels, metric="euclidean")

    run = faceval.identify("ROC用", models=["sface"], enroll=1, nonmated=0.3)   # 1:N search
    run.models["sface"].fnir_at_fpir["1e-2"].threshold, run.models["sface"].figures.cmc_at(1)
    run.save("results/", lang="ja")                          # identification.json, candidates.csv, report.html

    run = faceval.identify_embeddings(vectors, labels, metric="cosine", roles=roles)

Everything else (``faceval.stats.metrics`` for scores made elsewhere aside) is internal and may change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceval.output.results import ModelFigures, Result
from faceval.stats.identification import DEFAULT_TARGET_FPIR
from faceval.stats.search import DEFAULT_CANDIDATES, DEFAULT_MAX_RANK

if TYPE_CHECKING:
    from faceval.identify_run import IdentificationRun

__version__ = "0.1.0"
__all__ = [
    "ModelFigures",
    "Result",
    "__version__",
    "evaluate",
    "evaluate_embeddings",
    "identify",
    "identify_embeddings",
]


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
    from faceval.compute.engine import EngineOptions
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
    from faceval.compute.engine import EngineOptions
    from faceval.pipeline import GroupRequest, evaluate_vectors

    thresholds = {} if threshold is None else {name: threshold}
    request = GroupRequest(target_fmr=target_fmr, thresholds=thresholds, n_resamples=resamples, seed=seed)
    engine = EngineOptions(scheduler, device)
    return evaluate_vectors(vectors, labels, metric, name=name, groups=request, engine=engine)


def identify(
    sources: str | Path | Sequence[str | Path],
    models: Sequence[str] = ("dlib",),
    *,
    layout: str = "auto",
    enroll: int | None = None,
    nonmated: float | None = None,
    distractors: str | Path | None = None,
    group_by: Sequence[str] = (),
    attributes: str | Path | None = None,
    fusion: str = "max",
    rank: int = 1,
    max_rank: int = DEFAULT_MAX_RANK,
    candidates: int = DEFAULT_CANDIDATES,
    target_fpir: float = DEFAULT_TARGET_FPIR,
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
) -> IdentificationRun:
    """1:N identification, as ``faceval identify``: search each probe exactly against a gallery with each model.

    ``sources`` and ``models`` as in `evaluate`. Roles come from a manifest ``role`` column (``gallery`` /
    ``probe``) or are drawn, seeded: ``enroll`` gallery images per identity (default 1), a ``nonmated`` share of
    the identities kept out of the gallery (their searches give FPIR); ``distractors`` adds gallery images of
    people never searched. ``rank`` is R of FNIR(T, R); ``thresholds`` maps a model name to your threshold in its
    own units (else the global threshold reaches ``target_fpir``). Nothing is written until
    `IdentificationRun.save`. ``run.models[name]`` is a `~faceval.identify_run.ModelSearch`: ``fnir_at_fpir`` and
    ``global_threshold`` in the model's units, ``figures`` the CMC (``figures.cmc_at(1)``), per-group figures
    and the FPIR against gallery size.

    >>> import tempfile, numpy, PIL.Image, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> rng = numpy.random.default_rng(0)
    >>> for k in range(9):
    ...     pixels = rng.integers(0, 256, (48, 48, 3), dtype=numpy.uint8)
    ...     PIL.Image.fromarray(pixels).save(folder / f"{'abc'[k % 3]}_{k}.png")
    >>> run = identify(folder, enroll=1, nonmated=0.34, dlib_detector="none", use_cache=False, progress=False,
    ...                resamples=0)
    >>> dlib = run.models["dlib"]
    >>> dlib.figures.n_mated, dlib.figures.n_nonmated, dlib.gallery.n_identities
    (4, 3, 2)
    """
    from faceval.identify_run import IdentifyRequest, SearchOptions, run_identification
    from faceval.pipeline import EmbeddingOptions
    from faceval.stats.gallery import RoleOptions

    if isinstance(sources, str | Path):
        sources = [sources]
    request = IdentifyRequest(
        sources=list(sources),
        models=tuple(models),
        layout=layout,
        dlib_options={"detector": dlib_detector, "upsample": dlib_upsample},
        spec_file=spec,
        embedding=EmbeddingOptions(cache, use_cache, jobs, progress=progress),
        roles=RoleOptions(enroll, nonmated, seed),
        distractors=distractors,
        group_by=tuple(group_by),
        attribute_csv=attributes,
        search=SearchOptions(fusion, rank, max_rank, candidates, target_fpir, dict(thresholds or {}), resamples, seed),
    )
    return run_identification(request)


def identify_embeddings(
    vectors: Any,
    labels: Sequence[Any],
    metric: str = "euclidean",
    *,
    roles: Sequence[str] | None = None,
    enroll: int | None = None,
    nonmated: float | None = None,
    groups: Sequence[Any] | None = None,
    name: str = "embeddings",
    fusion: str = "max",
    rank: int = 1,
    max_rank: int = DEFAULT_MAX_RANK,
    candidates: int = DEFAULT_CANDIDATES,
    target_fpir: float = DEFAULT_TARGET_FPIR,
    threshold: float | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> IdentificationRun:
    """The same searches and figures from vectors made elsewhere: one row of ``vectors`` per image, ``labels`` its
    identity, ``roles`` (``"gallery"`` / ``"probe"`` per row) or drawn by ``enroll`` / ``nonmated``, ``groups``
    one label per row. ``metric``: ``"euclidean"`` (a distance) or ``"cosine"``; ``threshold`` in those units.

    >>> import numpy
    >>> vectors = numpy.array([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [1.0, 1.2], [1.0, 1.5], [5.0, 5.0]])
    >>> labels = ["ann", "ann", "bob", "bob", "cid", "dan"]
    >>> roles = ["gallery", "probe", "gallery", "probe", "probe", "probe"]
    >>> run = identify_embeddings(vectors, labels, roles=roles, resamples=0)
    >>> model = run.models["embeddings"]
    >>> model.figures.cmc_at(1), model.figures.n_mated, model.figures.n_nonmated
    (1.0, 2, 2)
    >>> point = model.fnir_at_fpir["1e-1"]  # a distance: cid's probe is 0.5 from bob, both mates within 0.2
    >>> round(point.threshold, 4), point.fnir, point.fpir, point.supported  # 2 non-mated searches < 3 / 0.1
    (0.2, 0.0, 0.0, False)
    """
    from faceval.identify_run import SearchOptions, identify_vectors
    from faceval.stats.gallery import RoleOptions

    options = SearchOptions(
        fusion,
        rank,
        max_rank,
        candidates,
        target_fpir,
        {} if threshold is None else {name: threshold},
        resamples,
        seed,
    )
    return identify_vectors(vectors, labels, metric, options, RoleOptions(enroll, nonmated, seed), roles, groups,
                            name=name)  # fmt: skip
