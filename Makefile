# One command each: `make sim` (set up and run the simulator), `make test` (set up and test).
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[sim,plot,test,mqtt]'
	touch $@

.PHONY: setup sim demo test lint bench clean
setup: $(BIN)/.installed

sim: $(BIN)/.installed  ## the box in your terminal (keys: space = press, l = long press, q = quit)
	$(BIN)/stretch-companion sim $(ARGS)

demo: $(BIN)/.installed  ## a whole session, scripted and headless, printed as it happens
	$(BIN)/stretch-companion sim --headless $(ARGS)

test: $(BIN)/.installed  ## lint and the whole test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(BIN)/.installed
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
