# Two entry points do all the set-up on a fresh machine:  `make app`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# The local CPU build of torch; a plain `torch` would pull a several-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: app test install browser lint

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

app: install
	$(PY) visualizer/visualization_app.py

# Browser tests need Chromium and its driver; Debian/Ubuntu get them from apt.
browser:
	@command -v chromedriver >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } || \
	  echo "install chromium and chromedriver to run the browser tests"

lint: install
	$(PY) -m ruff check .

test: install browser lint
	$(PY) -m pytest
