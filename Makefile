# One command each: `make sim` (set up and run the simulator), `make test` (set up and test).
# The `stretch-companion` command is installed in .venv/bin; `make cli ARGS="..."` runs it.
PYTHON ?= python3
VENV ?= .venv
# system-test: the Debian architecture of the booted root, from the command line only
# (make system-test ARCH=arm64; empty: this machine's)
ARCH =
BIN = $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[sim,plot,web,mqtt,test]'
	touch $@

.PHONY: help setup sim demo history selftest config cli test lint bench clean system-test
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/'

setup: $(BIN)/.installed  ## create .venv and install the box into it (.venv/bin/stretch-companion)

sim: $(BIN)/.installed  ## the box in your terminal (keys: space = press, l = long press, q = quit)
	$(BIN)/stretch-companion sim $(ARGS)

demo: $(BIN)/.installed  ## a whole session, scripted and headless, printed as it happens
	$(BIN)/stretch-companion sim --headless $(ARGS)

history: $(BIN)/.installed  ## past sessions (ARGS="--history .../sim-history.db" for the simulator's)
	$(BIN)/stretch-companion history $(ARGS)

selftest: $(BIN)/.installed  ## try each part once, on mock pins with a fake voice and sensor
	$(BIN)/stretch-companion selftest --mock $(ARGS)

config: $(BIN)/.installed  ## the configuration in effect (ARGS="--config FILE")
	$(BIN)/stretch-companion config $(ARGS)

cli: $(BIN)/.installed  ## any command, e.g. make cli ARGS="history --plot hold.png"
	$(BIN)/stretch-companion $(ARGS)

test: $(BIN)/.installed  ## lint, type check (mypy over device/ and drivers/) and the whole test suite
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

system-test: $(BIN)/.installed  ## install and run the service under a real systemd (root; nspawn; ARCH=arm64|armhf emulated)
	scripts/system-test.sh $(if $(ARCH),--arch $(ARCH))

bench: $(BIN)/.installed  ## benchmarks (ARGS=--quick for a smoke run)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
