"""Output folders of the commands, never overwritten silently.

A command's default folder (`runs/train`, `runs/predict`) increments when it
is taken (`runs/train2`, `runs/train3`, ...), as detection tools do; a folder
named with `--out` that already holds a command's results is refused unless
`--exist-ok` is given.
"""

import os


def next_free_folder(base):
    """`base` if it does not exist or is empty, else `base2`, `base3`, ... the first that is free."""
    if _is_free(base):
        return base
    number = 2
    while not _is_free(f"{base}{number}"):
        number += 1
    return f"{base}{number}"


def _is_free(folder):
    return not os.path.exists(folder) or (os.path.isdir(folder) and not os.listdir(folder))


def output_folder(requested, default, markers, exist_ok, command):
    """The folder a command writes to.

    Args:
        requested: `--out` as given, or None for the default.
        default: the command's default folder, incremented when taken.
        markers: files whose presence means the folder holds a finished result of this command.
        exist_ok: write into a `requested` folder holding results anyway (`--exist-ok`).
        command: the command's name, for the error.

    Raises:
        ValueError: `requested` holds results (one of `markers`) and not `exist_ok`.
    """
    if requested is None:
        return next_free_folder(default)
    found = [name for name in markers if os.path.exists(os.path.join(requested, name))]
    if found and not exist_ok:
        raise ValueError(
            f"{requested} already holds the results of an earlier `rtmdet {command}` ({', '.join(found)}); "
            "pass --exist-ok to write over them, or choose another --out."
        )
    return requested


def add_output_arguments(parser, default, holds):
    """`--out` (default `default`, incremented when taken) and `--exist-ok` (write into an `--out` holding `holds`)."""
    parser.add_argument("--out", help=f"output directory (default {default}, or {default}2, ... the first one free)")
    parser.add_argument("--exist-ok", action="store_true", help=f"write into an --out that already holds {holds}")
