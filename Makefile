# make demo / make test bootstrap .venv themselves; the venv is rebuilt when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BIN := $(VENV)/bin

.PHONY: demo example-results test test-slow clean-venv

$(STAMP): pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job on the embedded digits: train, extract every D block, probe against raw pixels
# and a random D; prints the table. Writes only under runs/ (ignored by git).
demo: $(STAMP)
	$(BIN)/dcgan-features quickstart

# The committed example: the same run, its table, sample grid and report copied to results/.
example-results: $(STAMP)
	$(BIN)/dcgan-features quickstart --results results/quickstart.csv

# pytest exits 5 when it collected nothing: that is a failure, not a pass.
test: $(STAMP)
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'make test: no tests collected' >&2; exit 1; fi; exit $$rc

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean-venv:
	rm -rf $(VENV)
