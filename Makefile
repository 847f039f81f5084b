# make train: set up .venv and run the embedded default.  make test: set up and run the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
# two workers: the suite is mostly single-threaded tiny trainings in subprocesses (one file per worker)
PYTEST_ARGS ?= -n 2 --dist loadfile

# test-quick: the edit loop (< 2 min): unit tests that train nothing, and one tiny end-to-end run
.PHONY: browser train test test-quick lint format bench setup clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls several GB of CUDA packages on a CPU machine
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,realmodel]'
	touch $(STAMP)

setup: $(STAMP)

train: $(STAMP)
	$(PY) train.py $(ARGS)

test: $(STAMP) browser
	$(PY) -m pytest $(PYTEST_ARGS)

test-quick: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS) -m "not slow and not slurm and not realmodel" tests/unit tests/e2e/test_smoke.py

# headless Chromium from Debian's packages, for the completions-page test; without root the test skips, saying why
browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || { apt-get update -qq && apt-get install -y -qq chromium; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) outputs
