"""RTMDet's task test: the tiny detector (tiny/s' linear box branch) from build to saved preset.

Its `fit` step runs in training/test_train_step.py, on that module's compiled model.
"""

import pytest

from keras_rtmdet import RTMDet
from tests.test_case import TaskCase
from tests.test_case import run_build_test
from tests.test_case import run_config_round_trip_test
from tests.test_case import run_keras_saving_test
from tests.test_case import run_predict_test
from tests.test_case import run_preset_saving_test


@pytest.fixture(scope="module")
def case():
    return TaskCase(RTMDet)


def test_build(case):
    run_build_test(case)


def test_predict(case):
    run_predict_test(case)


def test_config_round_trip(case):
    run_config_round_trip_test(case)


def test_keras_saving(case, tmp_path):
    run_keras_saving_test(case, tmp_path)


def test_preset_saving(case, tmp_path):
    run_preset_saving_test(case, tmp_path)
