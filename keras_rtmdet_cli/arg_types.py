"""argparse `type=` functions shared by the `rtmdet` commands.

Each parses one option's text and applies the same rule as the API
(`keras_rtmdet.utils.input_checks`), so a bad value stops at argument
parsing with argparse's usage error (exit code 2) naming the option.
The rule is imported when a value is parsed, never when the parsers are
built: `--help` stays free of the library (and of Keras).
"""

import argparse


def _parse(text, convert, what):
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _checked(check, *args):
    """`check(*args)`, its ValueError turned into argparse's error."""
    try:
        return check(*args)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_int(text):
    """An integer ≥ 1 (batch sizes, counts)."""
    from keras_rtmdet.utils.input_checks import check_positive_int

    return _checked(check_positive_int, _parse(text, int, "a positive integer"), "the value")


def non_negative_int(text):
    """An integer ≥ 0."""
    value = _parse(text, int, "an integer ≥ 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {text!r}")
    return value


def probability(text):
    """A finite number in [0, 1] (score and IoU thresholds)."""
    from keras_rtmdet.utils.input_checks import check_number

    return _checked(check_number, _parse(text, float, "a number in [0, 1]"), "the value", 0, 1)


def multiple_of_32(text):
    """One image side: a positive multiple of 32 (the largest stride); the error names the nearest ones."""
    from keras_rtmdet.utils.input_checks import check_image_size

    side = _parse(text, int, "a positive multiple of 32")
    return _checked(check_image_size, side, "the size")[0]


def image_size(text):
    """`"640"` → (640, 640); `"480,640"` or `"480x640"` → (height, width); multiples of 32."""
    from keras_rtmdet.utils.input_checks import check_image_size

    parts = text.lower().replace("x", ",").split(",")
    sides = tuple(_parse(part, int, "SIZE or HEIGHT,WIDTH (multiples of 32)") for part in parts)
    if len(sides) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHT,WIDTH (multiples of 32), got {text!r}")
    return _checked(check_image_size, sides[0] if len(sides) == 1 else sides, "the size")


def class_list(text):
    """`--classes`: comma-separated class indices and/or names → list (ints where a part is a number)."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"expected class indices or names separated by commas, got {text!r}")
    return [int(part) if part.isdigit() else part for part in parts]
