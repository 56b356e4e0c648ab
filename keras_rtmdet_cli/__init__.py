"""The `rtmdet` command line: `predict`, `train`, `val`, `export`, `convert`, `demo`, `parity` (see `main.py`).

A package beside `keras_rtmdet`, on top of it: importing any `keras_rtmdet` module runs the library's
root, which imports every model and so Keras and its backend (seconds). Here the parsers are built from
argparse alone, and the library is imported inside the functions that run a command.
"""
