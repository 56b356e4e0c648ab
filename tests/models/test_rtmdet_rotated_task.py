"""RTMDet-R's task test: the tiny rotated detector from build to saved preset.

With the m/l/x heads' exponential box branch, so that the task tests cover both branches (RTMDet's takes
the linear one); test_rtmdet_rotated_parity.py checks the linear rotated head against MMRotate. Its `fit`
step runs in training/test_rotated_training.py, on that module's compiled model.
"""

import pytest

from keras_rtmdet import RTMDetRotated
from tests.test_case import TaskCase
from tests.test_case import run_build_test
from tests.test_case import run_config_round_trip_test
from tests.test_case import run_keras_saving_test
from tests.test_case import run_predict_test
from tests.test_case import run_preset_saving_test


@pytest.fixture(scope="module")
def case():
    return TaskCase(RTMDetRotated, exp_on_reg=True)


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
