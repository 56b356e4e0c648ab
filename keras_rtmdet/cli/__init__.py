"""The `rtmdet` command line: `predict`, `train`, `val`, `convert`, `demo`, `parity` (see `keras_rtmdet.cli.main`)."""
