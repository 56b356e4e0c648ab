"""The suite's tiers (tests/README.md): what each pass runs is chosen by deselection, never by skips."""

import shutil
from pathlib import Path

import keras
import pytest

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.backend_independent

SUITE = """
import pytest

def test_sensitive():
    pass

@pytest.mark.backend_independent
def test_independent():
    pass

@pytest.mark.slow
def test_full_size():
    pass

@pytest.mark.backends("{this}")
def test_this_backend():
    pass

@pytest.mark.backends("{other}")
def test_other_backend():
    pass
"""


@pytest.fixture
def suite(pytester):
    shutil.copy(Path(__file__).with_name("conftest.py"), pytester.path / "conftest.py")
    shutil.copy(Path(__file__).parents[1] / "pyproject.toml", pytester.path / "pyproject.toml")
    this = keras.config.backend()
    other = "jax" if this != "jax" else "torch"
    pytester.makepyfile(test_suite=SUITE.format(this=this, other=other))
    return pytester


@pytest.mark.parametrize(
    "options, passed, deselected",
    [
        ((), {"sensitive", "independent", "this_backend"}, 2),
        (("--backend-independent=deselect",), {"sensitive", "this_backend"}, 3),
        (("--run-slow",), {"sensitive", "independent", "this_backend", "full_size"}, 1),
    ],
    ids=["default", "backend-independent-deselected", "run-slow"],
)
def test_passes_choose_their_tests_by_deselection(suite, options, passed, deselected):
    result = suite.runpytest("-p", "no:cacheprovider", "-v", *options)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == len(passed) and outcomes.get("deselected") == deselected
    assert "skipped" not in outcomes
    ran = {line.split("::test_")[1].split()[0] for line in result.outlines if " PASSED" in line}
    assert ran == passed
    result.stdout.fnmatch_lines([f"deselected: {deselected} (*"])


def test_an_xdist_pass_reports_its_deselections(suite):
    result = suite.runpytest("-p", "no:cacheprovider", "-n", "2", "--backend-independent=deselect")
    assert result.parseoutcomes().get("passed") == 2
    result.stdout.fnmatch_lines(["deselected: 3 (*1 backend-independent, run in the first pass*"])
