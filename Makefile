# The README's two commands: `make up` (set up, build the demo bundle, serve) and
# `make test`. Everything a fresh machine needs is installed from here.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mixmatch-installed

.PHONY: up test install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian's chromium renders the preview page in tests/api/test_preview_chromium.py;
# without root or apt the test skips with the reason instead of failing the install
install: $(STAMP)
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium) || \
		echo "chromium not installed: the preview browser test will be skipped"

up: $(STAMP)
	$(VENV)/bin/mixmatch up

test: install
	$(PY) -m pytest

clean:
	rm -rf $(VENV) bundles data .pytest_cache
