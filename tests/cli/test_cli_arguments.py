"""Option values are checked by argparse (`keras_rtmdet_cli.arg_types`): usage error, exit code 2, the option named."""

import argparse

import pytest

from keras_rtmdet_cli import arg_types
from keras_rtmdet_cli.main import build_parser

pytestmark = pytest.mark.backend_independent

PREDICT = ["predict", "image.jpg", "--preset", "p"]
VAL = ["val", "--preset", "p", "--synthetic", "8"]
EXPORT = ["export", "--preset", "p", "--out", "o"]
CONVERT = ["convert", "c.pth", "--arch", "0.167,0.125,1,false", "--out", "o"]

BAD_ARGUMENTS = [
    (PREDICT + ["--score-thr", "2"], ["--score-thr", "[0, 1]", "2.0"]),
    (PREDICT + ["--score-thr", "-1"], ["--score-thr", "[0, 1]"]),
    (PREDICT + ["--score-thr", "nan"], ["--score-thr", "nan"]),
    (PREDICT + ["--score-thr", "high"], ["--score-thr", "'high'"]),
    (PREDICT + ["--iou-thr", "1.5"], ["--iou-thr", "[0, 1]"]),
    (PREDICT + ["--max-det", "0"], ["--max-det", "positive integer"]),
    (PREDICT + ["--batch-size", "0"], ["--batch-size", "positive integer, got 0"]),
    (PREDICT + ["--batch-size", "-2"], ["--batch-size", "positive integer"]),
    (PREDICT + ["--batch-size", "2.5"], ["--batch-size", "'2.5'"]),
    (PREDICT + ["--patch-size", "0"], ["--patch-size", "positive integer"]),
    (PREDICT + ["--gap", "-1"], ["--gap", "≥ 0"]),
    (PREDICT + ["--image-size", "100"], ["--image-size", "multiple of 32 (the largest stride)", "96 or 128"]),
    (PREDICT + ["--image-size", "480,650"], ["--image-size", "(480, 640) or (480, 672)"]),
    (PREDICT + ["--image-size", "1,2,3"], ["--image-size", "SIZE or HEIGHT,WIDTH"]),
    (VAL + ["--batch-size", "0"], ["--batch-size", "positive integer"]),
    (VAL + ["--score-thr", "1.01"], ["--score-thr", "[0, 1]"]),
    (VAL + ["--image-size", "0"], ["--image-size", "positive integer"]),
    (["val", "--preset", "p", "--synthetic", "0"], ["--synthetic", "positive integer"]),
    (EXPORT + ["--batch-size", "0"], ["--batch-size", "positive integer"]),
    (EXPORT + ["--input-size", "0", "640"], ["--input-size", "positive integer"]),
    (EXPORT + ["--max-det", "2.5"], ["--max-det", "'2.5'"]),
    (EXPORT + ["--score-thr", "inf"], ["--score-thr", "inf"]),
    (EXPORT + ["--image-size", "640x100"], ["--image-size", "(640, 96) or (640, 128)"]),
    (CONVERT + ["--image-size", "100"], ["--image-size", "96 or 128"]),
    (CONVERT + ["--num-classes", "0"], ["--num-classes", "positive integer"]),
]


@pytest.mark.parametrize("argv, words", BAD_ARGUMENTS, ids=[" ".join(argv[-2:]) for argv, _ in BAD_ARGUMENTS])
def test_bad_option_values_are_usage_errors(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err
    for word in words:
        assert word in err


def test_good_option_values_parse():
    args = build_parser().parse_args(PREDICT + ["--score-thr", "0", "--iou-thr", "1", "--batch-size", "3"])
    assert (args.score_thr, args.iou_thr, args.batch_size, args.image_size) == (0.0, 1.0, 3, None)
    assert build_parser().parse_args(PREDICT + ["--image-size", "640"]).image_size == (640, 640)
    assert build_parser().parse_args(VAL + ["--image-size", "480x640"]).image_size == (480, 640)
    assert build_parser().parse_args(EXPORT + ["--image-size", "480,640"]).image_size == (480, 640)
    assert build_parser().parse_args(EXPORT + ["--input-size", "300", "500"]).input_size == [300, 500]


@pytest.mark.parametrize(
    "convert, text, expected",
    [
        (arg_types.positive_int, "7", 7),
        (arg_types.non_negative_int, "0", 0),
        (arg_types.probability, "0.25", 0.25),
        (arg_types.multiple_of_32, "640", 640),
        (arg_types.image_size, "480,640", (480, 640)),
    ],
)
def test_arg_types_return_the_parsed_value(convert, text, expected):
    assert convert(text) == expected


@pytest.mark.parametrize(
    "convert, text, words",
    [
        (arg_types.positive_int, "0", ["positive integer"]),
        (arg_types.positive_int, "True", ["'True'"]),
        (arg_types.probability, "1e9", ["[0, 1]"]),
        (arg_types.multiple_of_32, "650", ["multiple of 32 (the largest stride)", "640 or 672"]),
        (arg_types.multiple_of_32, "-32", ["positive integer"]),
        (arg_types.image_size, "0,640", ["positive integer"]),
    ],
)
def test_arg_types_raise_argparse_errors(convert, text, words):
    with pytest.raises(argparse.ArgumentTypeError) as error:
        convert(text)
    for word in words:
        assert word in str(error.value)
