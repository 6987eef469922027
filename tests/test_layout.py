"""Data flows one way through faceval's sub-packages: sources -> models -> stats -> compute -> output -> the
top-level orchestration (pipeline, evaluation, identify_run, protocols, score_files, demo, cli). A module may
import its own package, an earlier one, and the base every stage uses (`faceval.errors`, `faceval.atomic`,
``faceval.__version__``); never a later package nor the top level. Every import counts, module-level or inside a
function (lazy imports included); imports under ``if TYPE_CHECKING:`` do not, as they only name types for
annotations and never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "faceval"
LAYERS = ("sources", "models", "stats", "compute", "output")
TOP = len(LAYERS)  # the top-level modules: the public API, the CLI and the orchestration
# Used by every stage: the errors users see, atomic result files, and the package itself for ``__version__`` (Python
# imports the package before any of its modules, so naming it loads nothing more).
BASE = {"faceval", "faceval.errors", "faceval.atomic"}


def layer(module: str) -> int:
    """The layer of a dotted module name under faceval (TOP for the top-level modules and the package itself)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 2 and parts[1] in LAYERS else TOP


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(source: str, module: str) -> set[str]:
    """The faceval modules ``source`` (the text of ``module``) imports anywhere but under ``if TYPE_CHECKING:``.
    ``from faceval.stats import lattice`` names the module ``faceval.stats.lattice``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "faceval")
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "faceval":
                for alias in node.names:
                    candidate = f"{name}.{alias.name}"
                    found.add(candidate if _is_module(candidate) else name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def violations(importer: str, source: str) -> list[tuple[str, str]]:
    """(importer, imported) for each import of a later layer (or the top level) from a sub-package's module."""
    own = layer(importer)
    if own == TOP:
        return []
    return [
        (importer, imported)
        for imported in sorted(imported_modules(source, importer))
        if imported not in BASE and layer(imported) > own
    ]


def all_violations() -> list[tuple[str, str]]:
    return [found for name, path in modules().items() for found in violations(name, path.read_text(encoding="utf-8"))]


def test_every_sub_package_imports_only_earlier_ones():
    against = all_violations()
    assert not against, "imports against the data flow (move the function to the layer that owns it):\n" + (
        "\n".join(f"  {importer} imports {imported}" for importer, imported in against)
    )


def test_every_module_is_in_a_known_place():
    subpackages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(LAYERS), "a new sub-package needs its place in LAYERS"


@pytest.mark.parametrize(
    ("importer", "source", "expected"),
    [
        # a lazy import inside a function counts
        ("faceval.stats.x", "def f():\n    from faceval.output.plots import draw\n", ["faceval.output.plots"]),
        # the top-level orchestration is later than every sub-package
        ("faceval.compute.x", "import faceval.evaluation\n", ["faceval.evaluation"]),
        ("faceval.models.x", "from faceval import pipeline\n", ["faceval.pipeline"]),
        ("faceval.output.x", "from ..evaluation import evaluate_embeddings\n", ["faceval.evaluation"]),
        # earlier layers, the same layer, the base modules and type-only imports are fine
        ("faceval.stats.x", "from faceval.models.scoring import Similarity\nfrom faceval.stats import lattice\n", []),
        ("faceval.sources.x", "from faceval.errors import InputError\nfrom faceval.atomic import write_csv\n", []),
        ("faceval.output.x", "if TYPE_CHECKING:\n    from faceval.identify_run import IdentificationRun\n", []),
    ],
)
def test_the_check_sees_each_kind_of_import(importer, source, expected):
    assert [imported for _, imported in violations(importer, source)] == expected
