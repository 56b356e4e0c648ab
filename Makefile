# Two entry points on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BACKENDS ?= tensorflow torch jax
# Two pytest-xdist workers on the two cores, each test module on one worker (its shared fixtures
# are built once), the longest modules first (tests/conftest.py); WORKERS=0 runs in one process.
WORKERS ?= 2
PYTEST_ARGS ?= -q -rs -p no:cacheprovider --durations=10 $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadfile --no-loadscope-reorder)

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

.PHONY: install demo test test-all parity-full
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/rtmdet demo

# One pass per backend. The backend-independent tests (tests/README.md) run in the first pass only;
# each pass prints its passed / skipped / deselected counts, its wall time and its 10 slowest tests.
test: install
	@first=run; for backend in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend ==="; \
		start=$$(date +%s); \
		KERAS_BACKEND=$$backend $(PY) -m pytest $(PYTEST_ARGS) --backend-independent=$$first || exit 1; \
		echo "=== KERAS_BACKEND=$$backend: $$(( $$(date +%s) - start )) s wall ==="; \
		first=deselect; \
	done

# Everything, the slow tier (full-size models) included.
test-all: install
	$(MAKE) test PYTEST_ARGS="$(PYTEST_ARGS) --run-slow"

# Every size of det, Ins and rotated against MMDetection / MMRotate at full size, on each backend, then
# the table of worst errors. Dumps are made on first use (tests/models/reference_dumps.py: ~10 min, 4 GB).
parity-full: install
	@for backend in $(BACKENDS); do \
		KERAS_BACKEND=$$backend RTMDET_PARITY_MODELS=all $(PY) -m pytest -q -p no:cacheprovider --run-slow \
			tests/models/test_full_size_parity.py || status=1; \
	done; $(PY) -m tests.models.reference_dumps; exit $${status:-0}
