#!/usr/bin/env bash
# Builds llama.cpp's llama-server (the gateway's integration tests) and llama-bench
# (benchmarks/decode.py's contender) once, from the pinned llama-cpp-python source
# package (its vendored llama.cpp), into a cache outside the checkout. Idempotent: each binary has its
# own presence check and a finished one is never rebuilt; the missing ones share one compile (~20 min
# on 2 cores). Where: $TANDEM_ENGINES_DIR, else ${XDG_CACHE_HOME:-~/.cache}/tandem/engines
# (cloud/engines.py reads the same place). Knobs: PYTHON (for pip), JOBS (make -j), NICE (niceness).
#
# VARIANT=avx2 (`make engines-avx2`) builds llama-bench alone with GGML_NATIVE=OFF and AVX2/FMA/F16C on
# (AVX-512 off) into llama.cpp-$VERSION-avx2: llama.cpp as an AVX2-only CPU runs it, to measure
# Tandem's forced AVX2 kernels against. Opt-in; `make engines` never builds it.
set -euo pipefail
VERSION=0.3.36
ROOT=${TANDEM_ENGINES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/engines}
VARIANT=${VARIANT:-native}
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-2}
NICE=${NICE:-10}

cpu_flags() { grep -m1 -E '^(flags|Features)' /proc/cpuinfo || uname -m; }
case "$VARIANT" in
    native)
        DEST=$ROOT/llama.cpp-$VERSION
        TARGETS=(llama-server llama-bench)
        ISA_FLAGS=()
        # On a CPU with AMX, GGML_NATIVE compiles llama.cpp's AMX matmul, and in this version it dies
        # with SIGILL at its first tile load (the tile config it builds on the stack is optimized away;
        # upstream PR ggml-org/llama.cpp#26954): every prompt of more than a few tokens crashes. Built
        # without AMX, llama.cpp runs its repacked AVX-512 VNNI kernels, its best path that works.
        if cpu_flags | grep -qw amx_int8; then
            NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
            ISA_FLAGS=("-DCMAKE_C_FLAGS=$NO_AMX" "-DCMAKE_CXX_FLAGS=$NO_AMX")
        fi
        stamp_value() { cpu_flags; echo "${NO_AMX:-}"; }   # GGML_NATIVE: another CPU rebuilds, as the kernels do
        ;;
    avx2)
        DEST=$ROOT/llama.cpp-$VERSION-avx2
        TARGETS=(llama-bench)
        ISA_FLAGS=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
                   -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF
                   -DGGML_AVX_VNNI=OFF)
        stamp_value() { echo "avx2 fma f16c"; }   # portable to any AVX2 CPU
        ;;
    *) echo "VARIANT must be native or avx2, not '$VARIANT'" >&2; exit 2 ;;
esac
STAMP=$DEST/cpu-flags   # what the binaries were built for

missing() {   # the targets not yet built for this CPU (all of them if the stamp differs)
    local same=0
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_value)" ] && same=1
    for t in "${TARGETS[@]}"; do
        if [ "$same" = 0 ] || [ ! -x "$DEST/bin/$t" ]; then echo "$t"; fi
    done
}

TODO=$(missing)
if [ -z "$TODO" ]; then
    echo "already built in $DEST/bin: ${TARGETS[*]}"
    exit 0
fi
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
exec 9>"$ROOT/.build-$VERSION-$VARIANT.lock"
flock 9   # a second build waits for the first, then finds the binaries
TODO=$(missing)
if [ -z "$TODO" ]; then
    echo "already built in $DEST/bin: ${TARGETS[*]}"
    exit 0
fi
# A stale stamp means every binary is rebuilt; drop it first so a half-finished build never looks current.
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" != "$(stamp_value)" ]; then
    echo "$DEST was built for another CPU: rebuilding"
    rm -f "$STAMP"
fi
echo "building $(echo $TODO) into $DEST/bin (~20 min on 2 cores)"

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
    -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF ${ISA_FLAGS[@]+"${ISA_FLAGS[@]}"} >"$WORK/cmake.log" \
    || { cat "$WORK/cmake.log"; exit 1; }
# shellcheck disable=SC2086  # TODO is a list of target names
nice -n "$NICE" make -C "$WORK/build" -j"$JOBS" $TODO >"$WORK/make.log" 2>&1 \
    || { tail -50 "$WORK/make.log"; exit 1; }
mkdir -p "$DEST/bin"
for t in $TODO; do
    cp "$WORK/build/bin/$t" "$DEST/bin/$t.tmp"
    mv "$DEST/bin/$t.tmp" "$DEST/bin/$t"
done
# The stamp covers the binaries built now and those already there (built for the same CPU).
stamp_value >"$STAMP"
echo "built $(echo $TODO) in $DEST/bin in $(( $(date +%s) - start )) s"
