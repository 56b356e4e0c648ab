"""The `rtmdet` command line: `predict`, `convert` and `demo` (see `keras_rtmdet.cli.main`)."""
