# Two entry points on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BACKENDS ?= tensorflow torch jax
PYTEST_ARGS ?= -q -p no:cacheprovider --durations=10

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

.PHONY: install demo test
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/rtmdet demo

test: install
	@for backend in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend ==="; \
		KERAS_BACKEND=$$backend $(PY) -m pytest $(PYTEST_ARGS) || exit 1; \
	done
