# Two commands a new user needs: `make try` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: try test lint install

$(BIN)/kb-bot: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/kb-bot

install: $(BIN)/kb-bot

## Set everything up, index the sample knowledge folder, ask it a question.
try: install
	$(BIN)/kb-bot index
	$(BIN)/kb-bot ask "how do I get reimbursed for a taxi"

## Run the whole test suite (what CI runs).
test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check bot tests scripts benchmarks
	if [ -x $(BIN)/hadolint ]; then $(BIN)/hadolint Dockerfile; else echo 'hadolint not installed here: Dockerfile not linted'; fi
