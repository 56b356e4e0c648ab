"""The package's layers import downward only, and nothing outside `models/` tests a detector's class.

docs/architecture.md describes the layers; these checks read the source (every `import` and
`from ... import`, function-level ones included), so a new upward import fails here first. The
command line, `keras_rtmdet_cli`, is a package of its own on top: the library never imports it.
"""

import ast
from pathlib import Path

import pytest

import keras_rtmdet

pytestmark = pytest.mark.backend_independent

PACKAGE = Path(keras_rtmdet.__file__).parent
# Rank of each top-level part: a module may import from its own part and from parts of a lower rank.
# training imports evaluation (the recipe's callbacks); evaluation and export import neither training
# nor each other. No part imports the package root, which imports every part.
LAYERS = {
    "ops": 0, "distribute": 0, "weights": 0, "version": 0, "resources": 0,
    "layers": 1, "losses": 1, "utils": 1,
    "data": 2,
    "models": 3,
    "inference": 4,
    "evaluation": 5, "export": 5,
    "training": 6,
}
COMMAND_LINE = "keras_rtmdet_cli"
VARIANT_CLASSES = {"RTMDet", "RTMDetIns", "RTMDetRotated"}


def package_modules():
    """(part, path) of every module but the package root, which gathers the public names of all."""
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative != Path("__init__.py"):
            yield relative.parts[0].removesuffix(".py"), path


def imported_modules(tree):
    """(line, module) of every import of the module, function-level ones included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def imported_parts(tree):
    """(line, part) of every `keras_rtmdet.<part>` the module imports, "the package root" for `keras_rtmdet`."""
    for line, module in imported_modules(tree):
        if module.startswith("keras_rtmdet."):
            yield line, module.split(".")[1]
        elif module == "keras_rtmdet":
            yield line, "the package root"


def test_every_part_has_a_layer():
    parts = {part for part, _ in package_modules()}
    assert parts <= set(LAYERS), sorted(parts - set(LAYERS))


def test_imports_run_downward_only():
    upward = []
    for part, path in package_modules():
        for line, imported in imported_parts(ast.parse(path.read_text())):
            if imported == "the package root":
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports the package root")
            elif LAYERS.get(imported, len(LAYERS)) > LAYERS[part]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports keras_rtmdet.{imported}")
            elif imported != part and LAYERS[imported] == LAYERS[part]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports its neighbour {imported}")
    assert not upward, "\n".join(upward)


def test_the_library_never_imports_the_command_line():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, module in imported_modules(ast.parse(path.read_text())):
            if module.split(".")[0] == COMMAND_LINE:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not found, "\n".join(found)


def test_no_isinstance_on_detector_variants_outside_models():
    found = []
    for part, path in package_modules():
        if part == "models":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass"):
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)} if len(node.args) > 1 else set()
                if names & VARIANT_CLASSES:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not found, found


def test_the_checks_see_an_upward_import():
    """The import reader itself: a models module importing the recipe, or the command line, is seen."""
    tree = ast.parse("def f():\n    from keras_rtmdet.training.train_recipe import train_rtmdet\n")
    assert list(imported_parts(tree)) == [(2, "training")]
    tree = ast.parse("import keras_rtmdet_cli.main\n\ndef f():\n    from keras_rtmdet_cli import predict\n")
    assert list(imported_modules(tree)) == [(1, "keras_rtmdet_cli.main"), (4, "keras_rtmdet_cli")]
