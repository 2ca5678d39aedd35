#!/usr/bin/env bash
# Builds llama.cpp's llama-server once, from the pinned llama-cpp-python source package (its
# vendored llama.cpp), into a cache outside the checkout, so the gateway's integration tests
# run against a real engine. Idempotent: a finished binary is never rebuilt. ~20 min on 2 cores.
# Where: $TANDEM_ENGINES_DIR, else ${XDG_CACHE_HOME:-~/.cache}/tandem/engines (cloud/engines.py
# reads the same place). Knobs: PYTHON (for pip), JOBS (make -j), NICE (niceness).
set -euo pipefail
VERSION=0.3.36
ROOT=${TANDEM_ENGINES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/engines}
DEST=$ROOT/llama.cpp-$VERSION
BIN=$DEST/bin/llama-server
STAMP=$DEST/cpu-flags   # the CPU it was built for (GGML_NATIVE): another CPU rebuilds, as the kernels do
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-2}
NICE=${NICE:-10}

cpu_flags() { grep -m1 -E '^(flags|Features)' /proc/cpuinfo || uname -m; }
built_here() { [ -x "$BIN" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(cpu_flags)" ]; }

if built_here; then
    echo "llama-server already built: $BIN"
    exit 0
fi
[ -x "$BIN" ] && echo "llama-server in $DEST was built for another CPU (or before $STAMP existed): rebuilding"
for tool in cmake make c++ cc; do
    command -v "$tool" >/dev/null || MISSING="${MISSING:-} $tool"
done
if [ -n "${MISSING:-}" ]; then
    echo "installing build tools (missing:$MISSING)"
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get install -y -q cmake build-essential >/dev/null \
        || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q cmake build-essential >/dev/null; }
fi

mkdir -p "$ROOT"
exec 9>"$ROOT/.build-$VERSION.lock"
flock 9   # a second build waits for the first, then finds the binary
if built_here; then
    echo "llama-server already built: $BIN"
    exit 0
fi

WORK=$(mktemp -d "$ROOT/.build-$VERSION.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)
"$PYTHON" -m pip download --quiet --no-binary :all: --no-deps \
    "llama-cpp-python==$VERSION" -d "$WORK"
tar xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
SRC=$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp
# No tests, examples or web UI (the prebuilt one would be downloaded); static, so the
# binary alone is the engine; no OpenSSL (the gateway talks plain HTTP on loopback).
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF >"$WORK/cmake.log" \
    || { cat "$WORK/cmake.log"; exit 1; }
nice -n "$NICE" make -C "$WORK/build" -j"$JOBS" llama-server >"$WORK/make.log" 2>&1 \
    || { tail -50 "$WORK/make.log"; exit 1; }
mkdir -p "$DEST/bin"
cp "$WORK/build/bin/llama-server" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
cpu_flags >"$STAMP"
echo "built $BIN in $(( $(date +%s) - start )) s"
