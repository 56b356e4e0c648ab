"""`python -m keras_rtmdet_cli ...`: the `rtmdet` command (as `torchrun -m keras_rtmdet_cli train ...` needs)."""

from keras_rtmdet_cli.main import main

raise SystemExit(main())
