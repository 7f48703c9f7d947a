# Two entry points do all set-up on a fresh machine:
#   make reference   the full 5-epoch reference run (venv, install, data, train, plots)
#   make test        the whole test suite (venv, install, real data where possible, pytest)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_ROOT ?= data
OUT ?= results/reference
DEBIAN_DATA := /usr/share/datasets/fashion-mnist
PYTEST_ARGS ?=

.PHONY: install data debian-data reference smoke test lessons clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian's package puts the four original files on disk for offline machines.
# Best effort: without root or apt the data is downloaded instead (or the
# real-data tests are skipped, saying why).
debian-data:
	@if [ -d $(DEBIAN_DATA) ]; then \
		echo "Fashion-MNIST: found Debian's copy in $(DEBIAN_DATA)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist package"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } || \
		echo "note: could not install dataset-fashion-mnist; falling back to other sources"; \
	else \
		echo "note: no root/apt-get; skipping Debian's dataset-fashion-mnist"; \
	fi

data: install debian-data
	$(PY) -m data_utils --root $(DATA_ROOT)

reference: data
	$(PY) -m solutions.train --data-root $(DATA_ROOT) --out $(OUT)

# A one-minute run of the same command, for checking a machine.
smoke: data
	$(PY) -m solutions.train --data-root $(DATA_ROOT) --epochs 1 --limit 2048 --out results/smoke

# Rebuild the student notebooks from lessons/src and the solutions package.
lessons: install
	$(PY) -m autograder.build

test: install debian-data
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info results/smoke
