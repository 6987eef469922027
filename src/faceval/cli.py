"""The ``faceval`` command line: a thin layer over the Python API."""

from __future__ import annotations

import contextlib
import ctypes
import math
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from faceval import __version__
from faceval.atomic import output_folder
from faceval.compute.engine import EngineOptions, open_engine
from faceval.errors import FacevalError
from faceval.models.extraction import save_embeddings_npz
from faceval.models.model_files import list_models
from faceval.models.store import default_store_path, set_aside_if_damaged
from faceval.output.html_report import LANGUAGES
from faceval.output.results import Result
from faceval.output.summary import summary_lines
from faceval.pipeline import (
    EmbeddingOptions,
    EvaluationRequest,
    GroupRequest,
    OutputOptions,
    device_notes,
    embed_dataset,
    load_sources,
    metrics_from_embeddings_file,
    model_specs,
    run_evaluation,
)
from faceval.protocols import ProtocolRequest
from faceval.sources.score_formats import FORMATS
from faceval.stats.audit import audit_embeddings, audit_summary_lines, write_audit
from faceval.stats.gallery import RoleOptions
from faceval.stats.identification import DEFAULT_TARGET_FPIR
from faceval.stats.search import DEFAULT_CANDIDATES, DEFAULT_MAX_RANK, FUSIONS


def option_group(*decorators: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[..., Any]:
    """One decorator applying several click options in order, so that commands share them."""

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def _fail(message: str) -> None:
    raise click.ClickException(message)


def print_summary(result: Result, out_dir: Path) -> None:
    """The terminal summary of a run (`faceval.output.summary.summary_lines`)."""
    for line in summary_lines(result, out_dir):
        click.echo(line)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="faceval")
def main() -> None:
    """How well does a face-recognition model verify your own people, and at which threshold?"""
    _reuse_freed_memory()


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _reuse_freed_memory() -> None:
    """Let glibc keep freed blocks of up to 32 MiB for reuse (mmap threshold 32 MiB, trim threshold 128 MiB).

    By default each block above 128 kB is its own mapping, returned to the system when freed, and glibc raises that
    bar only as it sees such blocks freed, at random with several threads: the bootstrap's blocks of tens of MB,
    allocated and freed by the thousand, then cost a page fault per 4 kB each time (0.2-0.4 s of system time at
    355k pairs, 0.7 s at 10^7 pairs in `benchmarks/bench_scale.py`). A command-line process only: a library leaves
    its host's allocator alone. Nothing happens where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    # The trim threshold also freezes the mmap threshold: set it only once the mmap threshold is taken.
    if mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1:
        mallopt(_M_TRIM_THRESHOLD, 128 << 20)


# SOURCES, --layout, --manifest: where the images are (shared by 'evaluate' and 'embed').
dataset_options = option_group(
    click.argument("sources", nargs=-1, type=click.Path(path_type=Path)),
    click.option(
        "--layout",
        type=click.Choice(["auto", "flat", "folders", "manifest"]),
        default="auto",
        show_default=True,
        help="Dataset layout: flat name_xxx files, one folder per identity, or a CSV. 'auto' refuses a folder "
        "with images both in it and in subfolders: choose flat or folders (the rest is listed as skipped).",
    ),
    click.option(
        "--manifest",
        type=click.Path(path_type=Path, dir_okay=False),
        help="A CSV with path,identity[,attributes] columns (paths relative to the CSV).",
    ),
)


# --spec and dlib's detector settings (shared by 'evaluate' and 'embed').
model_options = option_group(
    click.option(
        "--spec",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="TOML or JSON preprocessing spec for --model onnx:PATH (input size, crop, colour, mean/std...).",
    ),
    click.option(
        "--dlib-detector",
        type=click.Choice(["hog", "cnn", "none"]),
        default="hog",
        show_default=True,
        help="dlib face detector; 'none' uses the whole image as the face (pre-cropped sets).",
    ),
    click.option(
        "--dlib-upsample",
        type=click.IntRange(0, 4),
        default=1,
        show_default=True,
        help="Times dlib's detector doubles the image first (finds smaller faces, slower).",
    ),
)


# --cache, --no-cache, --jobs, --max-temp, --quiet: how embeddings are computed and kept.
embedding_options = option_group(
    click.option(
        "--cache",
        type=click.Path(path_type=Path, dir_okay=False),
        help=f"Embedding store (SQLite) to reuse and fill [default: {default_store_path()}].",
    ),
    click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding store."),
    click.option(
        "--rebuild-cache",
        is_flag=True,
        help="Check the whole embedding store first; if it is damaged (a crash, a failing disk), move it aside "
        "(kept as PATH.damaged-TIME) and start a new one.",
    ),
    click.option(
        "--jobs",
        "-j",
        type=click.IntRange(min=1),
        help="Worker processes for embedding [default: one per CPU core].",
    ),
    click.option(
        "--max-temp",
        type=click.FloatRange(min=0),
        metavar="C",
        help="Pause embedding while the CPU is hotter than C degrees Celsius (resumes 3 degrees below).",
    ),
    click.option("--quiet", is_flag=True, help="No progress bars."),
)


# --scheduler, --device: where the work runs (a Dask cluster, a GPU).
engine_options = option_group(
    click.option(
        "--scheduler",
        metavar="ADDRESS|local:N",
        help="Run on a Dask cluster: the address of a running 'dask scheduler' (e.g. tcp://10.0.0.5:8786), or "
        "local:N for N worker processes on this machine. Workers need faceval installed and the images at the "
        "same path as here; vectors come back and only this machine writes the embedding store.",
    ),
    click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="auto",
        show_default=True,
        help="cuda: ONNX models through ONNX Runtime's CUDA provider and pair scoring with CuPy (pip install "
        "'faceval[gpu]'); auto: the GPU where one is found.",
    ),
)


# --group-by, --attributes: which images form the demographic groups.
grouping_options = option_group(
    click.option(
        "--group-by",
        metavar="COLUMN[,COLUMN...]",
        help="Manifest columns that form groups (combinations of values are groups), e.g. group,gender. "
        "Several dataset folders are grouped by folder without it.",
    ),
    click.option(
        "--attributes",
        "attribute_csv",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="CSV of identity,<columns...> whose columns (or --group-by ones) form the groups; it lists every "
        "identity, by plain name or as folder/identity when several folders are given.",
    ),
)


# --target-fmr, --threshold, --calibrate, --threshold-from, --resamples, --seed: thresholds and intervals.
threshold_options = option_group(
    click.option(
        "--target-fmr",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=1e-3,
        show_default=True,
        help="FMR over all impostor pairs that fixes the one global threshold applied to every group.",
    ),
    click.option(
        "--threshold",
        "thresholds",
        multiple=True,
        metavar="[MODEL=]VALUE",
        help="Your threshold in the model's units (dlib: a distance, e.g. 0.6): FNMR/FMR per group at it. "
        "Repeat as MODEL=VALUE for several models.",
    ),
    click.option(
        "--calibrate",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        metavar="FRACTION",
        help="Choose thresholds on this share of the identities (per group), report FMR/FNMR on the others.",
    ),
    click.option(
        "--threshold-from",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        metavar="RUN_DIR/metrics.json",
        help="Apply the thresholds chosen in an earlier run (global and per group).",
    ),
    click.option(
        "--resamples",
        type=click.IntRange(min=0),
        default=1000,
        show_default=True,
        help="Identity-bootstrap resamples for the 95 % intervals (0: no intervals).",
    ),
    click.option(
        "--intervals",
        type=click.Choice(["bootstrap", "streaming", "none"]),
        help="How the 95 % intervals are made: the exact identity bootstrap (holds every pair), streaming "
        "identity influences (bounded memory, any number of pairs), or none [default: the bootstrap up to "
        "5,000,000 pairs, streaming above; metrics.json says which].",
    ),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap and splits."),
)

# --full-sweep: every threshold of the score table, beside the readable sweep.csv ('evaluate' and 'metrics').
full_sweep_option = click.option(
    "--full-sweep",
    is_flag=True,
    help="Also write every threshold of the score table to <model>/sweep_full.npz (sweep.csv keeps the rows "
    "where a rate changes visibly and every FMR decade).",
)


# --pairs, --templates, --template-pairs, --save-scores: which pairs are scored, and keeping their scores.
protocol_options = option_group(
    click.option(
        "--pairs",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Score only these pairs: LFW's pairs.txt (10-fold accuracy in metrics.json) or a CSV "
        "path1,path2[,same][,fold] with paths relative to the dataset.",
    ),
    click.option(
        "--templates",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="CSV path,template_id[,media_id]: compare templates (IJB-style averaged features), not images.",
    ),
    click.option(
        "--template-pairs",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="CSV template_a,template_b[,same][,fold]: the template pairs to score [default: all pairs].",
    ),
    click.option(
        "--save-scores",
        is_flag=True,
        help="Also write every scored pair (paths, identities, score, genuine) to OUT/<model>/scores.parquet.",
    ),
)


# --no-report, --lang: the self-contained report.html (shared by 'evaluate', 'metrics', 'scores', 'identify', 'demo').
report_options = option_group(
    click.option("--no-report", is_flag=True, help="Do not write report.html."),
    click.option(
        "--lang",
        type=click.Choice(LANGUAGES),
        default="en",
        show_default=True,
        help="Language of report.html: English or Japanese.",
    ),
)


def _protocol(
    pairs: Path | None, templates: Path | None, template_pairs: Path | None, save_scores: bool
) -> ProtocolRequest:
    return ProtocolRequest(pairs, templates, template_pairs, save_scores)


def _columns(text: str | None) -> tuple[str, ...]:
    """``--group-by a,b`` as column names (blanks dropped).

    >>> _columns(" group, gender ,")
    ('group', 'gender')
    """
    return tuple(column.strip() for column in (text or "").split(",") if column.strip())


def _thresholds(values: tuple[str, ...]) -> dict[str, float]:
    """``--threshold 0.6`` (every model, key "") or ``--threshold dlib=0.6``."""
    parsed = {}
    for value in values:
        model, _, number = value.rpartition("=")
        try:
            threshold = float(number)
        except ValueError:
            threshold = math.nan
        if not math.isfinite(threshold):
            _fail(f"--threshold takes VALUE or MODEL=VALUE, a finite number in the model's units (e.g. dlib=0.6), "
                  f"got {value!r}")  # fmt: skip
        parsed[model.strip()] = threshold
    return parsed


def _group_request(
    target_fmr: float,
    thresholds: tuple[str, ...],
    calibrate: float | None,
    threshold_from: Path | None,
    resamples: int,
    intervals: str | None,
    seed: int,
    group_by: str | None = None,
    attribute_csv: Path | None = None,
) -> GroupRequest:
    return GroupRequest(
        group_by=_columns(group_by),
        attribute_csv=attribute_csv,
        target_fmr=target_fmr,
        thresholds=_thresholds(thresholds),
        calibrate=calibrate,
        threshold_from=threshold_from,
        n_resamples=resamples,
        intervals=intervals,
        seed=seed,
    )


def _sources(sources: tuple[Path, ...], manifest: Path | None, command: str) -> tuple[Path, ...]:
    sources = (*sources, manifest) if manifest is not None else sources
    if not sources:
        _fail(f"give a dataset folder or --manifest CSV, e.g. faceval {command} ./faces --model dlib")
    return sources


class TerminationRequested(KeyboardInterrupt):
    """SIGTERM (a batch scheduler, ``docker stop``) or SIGHUP (a closed terminal), handled like Ctrl-C."""

    def __init__(self, number: int) -> None:
        super().__init__(signal.Signals(number).name)
        self.number = number


def _request_termination(number: int, frame: object) -> None:
    raise TerminationRequested(number)


# SIGHUP is POSIX only.
_TERMINATION_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
# Where a user should report a bug: shown with the traceback of an unexpected error.
BUG_REPORT_HINT = (
    "this is a bug in faceval {version}, not a problem with your data: please report it to the faceval developers "
    "(the issue tracker of the repository you installed faceval from) with the command and the traceback above"
)


def _say(message: str) -> None:
    # After a closed terminal (SIGHUP) stderr may be gone too: nothing can be said then.
    with contextlib.suppress(OSError):
        click.echo(message, err=True)


@contextlib.contextmanager
def _reported_errors() -> Iterator[None]:
    """The user's problems become one line that names the file and the fix; Ctrl-C, SIGTERM and SIGHUP commit
    what was received and say so (exit 130, 143, 129); anything else is faceval's bug: traceback and where to
    report it (exit 70)."""
    previous = {number: signal.signal(number, _request_termination) for number in _TERMINATION_SIGNALS}
    try:
        yield
    except KeyboardInterrupt as interruption:
        number = getattr(interruption, "number", signal.SIGINT)
        how = "interrupted" if number == signal.SIGINT else f"terminated by {signal.Signals(number).name}"
        _say(
            f"\n{how}: every image embedded so far is kept in the embedding store (unless --no-cache); run the "
            "same command again to go on"
        )
        sys.exit(128 + number)
    except FacevalError as error:
        _fail(str(error))
    except OSError as error:
        if error.filename is None:  # faceval names the files it writes: an anonymous OSError is a bug
            _report_bug()
        # The machine's refusal about a file the user named (no permission, no such folder): theirs to fix.
        _fail(str(error))
    except click.ClickException:
        raise  # a mistake in the command line, already said in one line (exit 1 or 2)
    except Exception:
        _report_bug()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _report_bug() -> None:
    """Print the traceback of the exception being handled and where to report it; exit 70 (EX_SOFTWARE)."""
    _say(traceback.format_exc().rstrip())
    _say(f"\nfaceval: {BUG_REPORT_HINT.format(version=__version__)}")
    sys.exit(70)


def _rebuild_cache(rebuild: bool, cache: Path | None, no_cache: bool) -> None:
    """``--rebuild-cache``: set a damaged store aside and say where it went."""
    if not rebuild:
        return
    if no_cache:
        _fail("--rebuild-cache and --no-cache contradict each other: give one of them")
    path = cache or default_store_path()
    moved = set_aside_if_damaged(path)
    if moved is None:
        _say(f"embedding store {path}: checked, sound; kept as it is")
    else:
        aside, reason = moved
        _say(
            f"embedding store {path} was damaged ({reason}): moved to {aside} (delete it when you no longer need "
            "it); a new store starts in its place"
        )


@main.command()
@dataset_options
@click.option(
    "--model",
    "models",
    multiple=True,
    default=("dlib",),
    show_default=True,
    help="Model to evaluate; repeat to compare: dlib, japanese-face:PATH, sface[:PATH], arcface:PATH, "
    "or onnx:PATH with --spec. 'faceval models' lists them.",
)
@model_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Folder for metrics.json, CSV files and plots.",
)
@embedding_options
@engine_options
@grouping_options
@threshold_options
@protocol_options
@report_options
@click.option("--no-audit", is_flag=True, help="Skip the dataset audit (duplicates, mislabels, same person twice).")
@click.option(
    "--exclude",
    "exclude_csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="AUDIT.csv",
    help="Leave out the images an audit.csv marks exclude=yes (edit the column to choose); report.html shows "
    "how the figures moved.",
)
@click.option(
    "--exclude-duplicates",
    is_flag=True,
    help="Leave out the extra copies of exact and near duplicates (every copy when filed under several identities).",
)
@full_sweep_option
def evaluate(
    sources: tuple[Path, ...],
    layout: str,
    manifest: Path | None,
    models: tuple[str, ...],
    spec: Path | None,
    dlib_detector: str,
    dlib_upsample: int,
    out: Path,
    cache: Path | None,
    no_cache: bool,
    rebuild_cache: bool,
    jobs: int | None,
    max_temp: float | None,
    quiet: bool,
    scheduler: str | None,
    device: str,
    group_by: str | None,
    attribute_csv: Path | None,
    target_fmr: float,
    thresholds: tuple[str, ...],
    calibrate: float | None,
    threshold_from: Path | None,
    resamples: int,
    intervals: str | None,
    seed: int,
    pairs: Path | None,
    templates: Path | None,
    template_pairs: Path | None,
    save_scores: bool,
    full_sweep: bool,
    no_report: bool,
    lang: str,
    no_audit: bool,
    exclude_csv: Path | None,
    exclude_duplicates: bool,
) -> None:
    """Embed every image of SOURCES with each model and measure verification over all pairs.

    SOURCES is a folder of face images (flat 'name_001.png' files, or one sub-folder per identity) or a
    manifest CSV. Embeddings are kept in the embedding store, so a re-run only embeds what is new.
    """
    request = EvaluationRequest(
        sources=_sources(sources, manifest, "evaluate"),
        models=models,
        out_dir=out,
        layout=layout,
        dlib_options={"detector": dlib_detector, "upsample": dlib_upsample},
        spec_file=spec,
        embedding=EmbeddingOptions(cache, not no_cache, jobs, max_temp, progress=not quiet),
        groups=_group_request(
            target_fmr, thresholds, calibrate, threshold_from, resamples, intervals, seed, group_by, attribute_csv
        ),
        protocol=_protocol(pairs, templates, template_pairs, save_scores),
        outputs=OutputOptions(
            audit=not no_audit,
            exclude_csv=exclude_csv,
            exclude_duplicates=exclude_duplicates,
            html=not no_report,
            lang=lang,
            full_sweep=full_sweep,
        ),
        engine=EngineOptions(scheduler, device),
    )
    with _reported_errors():
        _rebuild_cache(rebuild_cache, cache, no_cache)
        result = run_evaluation(request, command=sys.argv)
    print_summary(result, out)


@main.command()
@dataset_options
@click.option("--model", default="dlib", show_default=True, help="Model to embed with ('faceval models' lists them).")
@model_options
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the vectors to this .npz (labels, paths, vectors, failed_paths, failed_reasons) for "
    "'faceval metrics'.",
)
@embedding_options
@engine_options
def embed(
    sources: tuple[Path, ...],
    layout: str,
    manifest: Path | None,
    model: str,
    spec: Path | None,
    dlib_detector: str,
    dlib_upsample: int,
    out: Path | None,
    cache: Path | None,
    no_cache: bool,
    rebuild_cache: bool,
    jobs: int | None,
    max_temp: float | None,
    quiet: bool,
    scheduler: str | None,
    device: str,
) -> None:
    """Embed every image of SOURCES with one model into the embedding store, without evaluating.

    A later 'faceval evaluate' with the same model and settings reuses every vector; Ctrl-C keeps what is done.
    """
    if no_cache and out is None:
        _fail("--no-cache without --out would keep nothing; give --out EMB.npz or drop --no-cache")
    with _reported_errors():
        _rebuild_cache(rebuild_cache, cache, no_cache)
        dataset = load_sources(_sources(sources, manifest, "embed"), layout)
        specs = model_specs([model], {"detector": dlib_detector, "upsample": dlib_upsample}, spec, jobs, device)
        options = EmbeddingOptions(cache, not no_cache, jobs, max_temp, progress=not quiet)
        with open_engine(EngineOptions(scheduler, device), scoring=False) as engine:
            (embedding_set,) = embed_dataset(dataset, specs, options, engine.workers)
        for note in device_notes(specs, device):
            click.echo(f"note: {note}")
        if out is not None:
            save_embeddings_npz(out, dataset, embedding_set)
    click.echo(
        f"{dataset.n_images} images: {dataset.n_images - embedding_set.n_cached} processed now, "
        f"{embedding_set.n_cached} from the store; {embedding_set.n_failed} without a vector (see the reasons "
        "in the .npz or with faceval evaluate)"
    )
    if out is not None:
        click.echo(f"vectors: {out} (faceval metrics {out} --metric {embedding_set.similarity.value})")


@main.command()
@click.argument("embeddings", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--metric",
    type=click.Choice(["euclidean", "cosine"]),
    help="How the vectors are compared: euclidean distance (dlib) or cosine similarity "
    "[default: what the file says; 'faceval embed' files say it].",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("results"), show_default=True)
@threshold_options
@protocol_options
@report_options
@full_sweep_option
@engine_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
def metrics(
    embeddings: Path,
    metric: str | None,
    out: Path,
    target_fmr: float,
    thresholds: tuple[str, ...],
    calibrate: float | None,
    threshold_from: Path | None,
    resamples: int,
    intervals: str | None,
    seed: int,
    pairs: Path | None,
    templates: Path | None,
    template_pairs: Path | None,
    save_scores: bool,
    full_sweep: bool,
    no_report: bool,
    lang: str,
    scheduler: str | None,
    device: str,
    quiet: bool,
) -> None:
    """Compute the metrics from EMBEDDINGS, an .npz file with 'labels' and 'vectors' arrays made elsewhere.

    'faceval embed --out' writes such a file; its failed images count in the FTE.
    """
    groups = _group_request(target_fmr, thresholds, calibrate, threshold_from, resamples, intervals, seed)
    with _reported_errors():
        result = metrics_from_embeddings_file(
            embeddings,
            metric,
            out,
            command=sys.argv,
            groups=groups,
            protocol=_protocol(pairs, templates, template_pairs, save_scores),
            html=not no_report,
            lang=lang,
            full_sweep=full_sweep,
            engine=EngineOptions(scheduler, device),
            progress=not quiet,
        )
    print_summary(result, out)


@main.command()
@click.argument("score_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "file_format",
    type=click.Choice(FORMATS),
    help="bob4: 'claimed_id real_id test_label score'; bob5: 'claimed_id model_label real_id test_label score' "
    "(genuine when claimed_id == real_id); csv: a header with score,genuine[,group columns]; parquet: "
    "score,genuine columns ('--save-scores' files) [default: by suffix, else by the fields of line 1].",
)
@click.option(
    "--higher-is-better/--lower-is-better",
    default=None,
    help="Whether a larger score means more alike (a similarity) or less (a distance) "
    "[default: higher, or what a faceval Parquet file says].",
)
@click.option("--group-by", metavar="COLUMN[,COLUMN...]", help="CSV/Parquet columns whose values form groups.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results"), show_default=True)
@report_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
def scores(
    score_file: Path,
    file_format: str | None,
    higher_is_better: bool | None,
    group_by: str | None,
    out: Path,
    no_report: bool,
    lang: str,
    quiet: bool,
) -> None:
    """Every figure, plot and the report from SCORE_FILE, scores made by another system.

    Millions of lines are read in blocks, never whole: up to 5,000,000 lines counted exactly (memory for the
    distinct scores), more on a lattice spanning the file's scores (fixed memory; metrics.json states it).
    """
    from faceval.score_files import evaluate_score_file  # pyarrow loads for this command only

    columns = _columns(group_by)
    with _reported_errors(), output_folder(out):
        result = evaluate_score_file(
            score_file,
            out,
            file_format,
            higher_is_better,
            columns,
            command=sys.argv,
            html=not no_report,
            lang=lang,
            progress=not quiet,
        )
    print_summary(result, out)


@main.command()
@dataset_options
@click.option(
    "--embeddings",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Search with the vectors of an .npz file instead of embedding images ('labels', 'vectors', and "
    "optionally 'roles' and 'groups' arrays; 'faceval embed --out' writes one).",
)
@click.option(
    "--metric",
    type=click.Choice(["euclidean", "cosine"]),
    help="With --embeddings: how the vectors compare [default: what the file says].",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Model to search with; repeat to compare (as for 'faceval evaluate') [default: dlib].",
)
@model_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Folder for identification.json, candidates.csv, roles.csv, plots and report.html.",
)
@embedding_options
@grouping_options
@click.option(
    "--enroll",
    type=click.IntRange(min=1),
    metavar="K",
    help="Put K random images of each identity in the gallery; the rest are mated probes [default without a "
    "'role' column: 1].",
)
@click.option(
    "--nonmated",
    type=click.FloatRange(0, 1, max_open=True),
    metavar="F",
    help="Keep a random share F of the identities out of the gallery: their images are non-mated searches "
    "(needed for FPIR).",
)
@click.option(
    "--distractors",
    type=click.Path(exists=True, path_type=Path),
    metavar="DIR",
    help="Extra gallery images of people who are never searched (a folder or manifest): a larger gallery.",
)
@click.option(
    "--fusion",
    type=click.Choice(list(FUSIONS)),
    default="max",
    show_default=True,
    help="An identity with several gallery images scores the best of them (max) or its mean embedding.",
)
@click.option(
    "--rank",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="R",
    help="FNIR(T, R): a mated search is found when its mate is within the top R and scores >= T.",
)
@click.option(
    "--max-rank",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_RANK,
    show_default=True,
    help="Longest rank of the CMC (ranks beyond it are recorded as '>max').",
)
@click.option(
    "--candidates",
    type=click.IntRange(min=0),
    default=DEFAULT_CANDIDATES,
    show_default=True,
    metavar="N",
    help="Candidates per probe written to candidates.csv.",
)
@click.option(
    "--target-fpir",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=DEFAULT_TARGET_FPIR,
    show_default=True,
    help="FPIR over all non-mated searches that fixes the one global threshold for the groups.",
)
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="[MODEL=]VALUE",
    help="Use your threshold (the model's units) as the global one instead; repeat as MODEL=VALUE.",
)
@click.option(
    "--resamples",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Identity-bootstrap resamples for the 95 % intervals (0: none).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the roles, gallery order, bootstrap.")
@report_options
def identify(
    sources: tuple[Path, ...],
    layout: str,
    manifest: Path | None,
    embeddings: Path | None,
    metric: str | None,
    models: tuple[str, ...],
    spec: Path | None,
    dlib_detector: str,
    dlib_upsample: int,
    out: Path,
    cache: Path | None,
    no_cache: bool,
    rebuild_cache: bool,
    jobs: int | None,
    max_temp: float | None,
    quiet: bool,
    group_by: str | None,
    attribute_csv: Path | None,
    enroll: int | None,
    nonmated: float | None,
    distractors: Path | None,
    fusion: str,
    rank: int,
    max_rank: int,
    candidates: int,
    target_fpir: float,
    thresholds: tuple[str, ...],
    resamples: int,
    seed: int,
    no_report: bool,
    lang: str,
) -> None:
    """1:N identification: search each probe against a gallery, exactly, and measure CMC, FNIR at FPIR, per group.

    The gallery and probes come from a manifest 'role' column (gallery | probe) or are drawn, seeded: --enroll K
    images per identity into the gallery, --nonmated F of the identities kept out (their searches give FPIR).
    Thresholds are reported in the model's units; roles.csv repeats the same roles (--manifest roles.csv).
    """
    # Imported here: every other command (faceval metrics on a few hundred images above all) spares their import.
    from faceval.identify_run import IdentifyRequest, SearchOptions, identify_from_embeddings_file, run_identification
    from faceval.output.identify_report import identification_summary_lines

    with _reported_errors(), output_folder(out):
        _rebuild_cache(rebuild_cache, cache, no_cache)
        search_options = SearchOptions(
            fusion, rank, max_rank, candidates, target_fpir, _thresholds(thresholds), resamples, seed
        )
        roles = RoleOptions(enroll, nonmated, seed)
        if embeddings is not None:
            if sources or manifest or models or distractors or group_by or attribute_csv:
                _fail(
                    "--embeddings searches with the file's vectors: drop SOURCES, --manifest, --model, "
                    "--distractors and --group-by/--attributes (give the file 'groups' and 'roles' arrays)"
                )
            run = identify_from_embeddings_file(embeddings, metric, roles, search_options, progress=not quiet)
        else:
            request = IdentifyRequest(
                sources=_sources(sources, manifest, "identify"),
                models=models or ("dlib",),
                out_dir=out,
                layout=layout,
                dlib_options={"detector": dlib_detector, "upsample": dlib_upsample},
                spec_file=spec,
                embedding=EmbeddingOptions(cache, not no_cache, jobs, max_temp, progress=not quiet),
                roles=roles,
                distractors=distractors,
                group_by=_columns(group_by),
                attribute_csv=attribute_csv,
                search=search_options,
            )
            run = run_identification(request)
        saved = run.save(out, sys.argv, html=not no_report, lang=lang)
    click.echo("")
    for line in identification_summary_lines(run.to_dict()):
        click.echo(line)
    report = out / "report.html"
    click.echo(f"results: {saved}" + (f", {report}" if report.exists() else ""))


@main.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    help="A local copy of the AT&T faces (files are matched by checksum): for offline machines.",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/demo"), show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@report_options
def demo(data: Path | None, out: Path, quiet: bool, no_report: bool, lang: str) -> None:
    """Download (once, checksum-verified) the public AT&T faces and evaluate dlib on them."""
    from faceval.demo import CITATION, prepare_demo_data

    with _reported_errors():
        folder = prepare_demo_data(data, progress=not quiet)
        click.echo(f"demo data: {folder} (AT&T Database of Faces; cite {CITATION})")
        request = EvaluationRequest(
            sources=(folder,),
            out_dir=out,
            embedding=EmbeddingOptions(progress=not quiet),
            outputs=OutputOptions(html=not no_report, lang=lang),
        )
        result = run_evaluation(request, command=sys.argv)
    print_summary(result, out)


@main.command()
@dataset_options
@click.option("--model", default="dlib", show_default=True, help="Model whose embeddings the audit compares.")
@model_options
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("audit"), show_default=True,
    help="Folder for audit.json and audit.csv.",
)  # fmt: skip
@embedding_options
def audit(
    sources: tuple[Path, ...],
    layout: str,
    manifest: Path | None,
    model: str,
    spec: Path | None,
    dlib_detector: str,
    dlib_upsample: int,
    out: Path,
    cache: Path | None,
    no_cache: bool,
    rebuild_cache: bool,
    jobs: int | None,
    max_temp: float | None,
    quiet: bool,
) -> None:
    """Check a labelled dataset before trusting its figures: exact and near duplicates, one person under two
    names, probably mislabelled images, images with several faces, failures by reason.

    Writes audit.json and audit.csv (one row per flagged image; 'faceval evaluate --exclude audit.csv' leaves
    out the rows marked exclude=yes).
    """
    with _reported_errors(), output_folder(out):
        _rebuild_cache(rebuild_cache, cache, no_cache)
        dataset = load_sources(_sources(sources, manifest, "audit"), layout)
        specs = model_specs([model], {"detector": dlib_detector, "upsample": dlib_upsample}, spec, jobs)
        options = EmbeddingOptions(cache, not no_cache, jobs, max_temp, progress=not quiet)
        (embedding_set,) = embed_dataset(dataset, specs, options)
        document = write_audit(out, audit_embeddings(dataset, embedding_set))
    for line in audit_summary_lines(document):
        click.echo(line)
    click.echo(f"audit: {out / 'audit.json'}, {out / 'audit.csv'}")


@main.command()
def models() -> None:
    """List the known model files: name, sha256, licence, and where each was found or how to get it."""
    for entry in list_models():
        click.echo(f"{entry['name']}  ({entry['file']})")
        click.echo(f"    {entry['description']}")
        click.echo(f"    sha256:  {entry['sha256'] or 'not pinned (proprietary: checked by your own copy)'}")
        click.echo(f"    licence: {entry['licence']}")
        click.echo(f"    found:   {entry['found_at']}" if entry["found_at"] else f"    get it:  {entry['how_to_get']}")


if __name__ == "__main__":  # pragma: no cover
    main()
