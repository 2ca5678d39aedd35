"""Native kernels for quantized models: compiled from the C++ files here at first use, cached.

`qlinear.cpp` holds the quantized matmul and embedding ops, `decode_step.cpp`
one decode token through every layer; `quant_blocks.h` the formats they share.

The library is built for the CPU it runs on (-march=native) and cached under
`$TANDEM_KERNEL_CACHE` (default ~/.cache/tandem/kernels), keyed by the source,
the torch version, the compiler and the CPU's feature flags, so a later process
loads it in milliseconds. Without a C++ compiler the quantized layers fall back
to dequantize-then-matmul in torch (correct, slower) and say so once in the log.
Set TANDEM_NATIVE_KERNELS=0 to force that fallback.

TANDEM_KERNEL_ISA=avx2 compiles for an AVX2-only CPU instead (-march=haswell: AVX2, FMA, F16C;
every AVX-512 and VNNI path off), into its own cache entry, so the AVX2 path is built, tested and
measured on an AVX-512 machine too; `isa()` says which one is in use. TANDEM_KERNEL_ISA=avx512 is
this CPU without AMX: where AMX tiles exist the prompt's matmuls run as bf16 on them (through
BLAS), and this build keeps them on the int8 tile dot that AVX-512 CPUs without AMX run.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sysconfig
from functools import cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SOURCES = [HERE / "qlinear.cpp", HERE / "decode_step.cpp"]
HEADERS = [HERE / "quant_blocks.h"]
COMPILER = os.environ.get("CXX", "g++")
FLAGS = ["-O3", "-fopenmp", "-std=c++17", "-shared", "-fPIC", "-DNDEBUG", "-w"]
# TANDEM_KERNEL_ISA -> the target flags, and the CPU features the result needs to run.
NO_AMX = ["-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16"]
ISAS = {
    "native": (["-march=native"], ()),
    "avx512": (["-march=native", *NO_AMX], ("avx512f", "avx512bw", "avx512vl", "avx512_vnni")),
    "avx2": (["-march=haswell"], ("avx2", "fma", "f16c")),
}


class KernelBuildError(RuntimeError):
    """The native kernels could not be compiled or loaded (the message says why)."""


def cache_dir() -> Path:
    return Path(os.environ.get("TANDEM_KERNEL_CACHE", Path.home() / ".cache" / "tandem" / "kernels"))


def cpu_flags() -> str:
    """The CPU's feature line: what a library built with -march=native is keyed by."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return os.uname().machine


def isa() -> str:
    """The instruction set the kernels are compiled for: $TANDEM_KERNEL_ISA, default "native"."""
    name = os.environ.get("TANDEM_KERNEL_ISA", "native").strip().lower() or "native"
    if name not in ISAS:
        raise ValueError(f"TANDEM_KERNEL_ISA={name!r} is not known; choose one of {', '.join(ISAS)}")
    return name


def target_flags() -> list[str]:
    """The compiler's target flags for `isa()`; an error if this CPU cannot run what they build."""
    flags, needs = ISAS[isa()]
    missing = [f for f in needs if f not in cpu_flags().split()]
    if missing:
        raise KernelBuildError(f"TANDEM_KERNEL_ISA={isa()} needs CPU features this CPU lacks: {', '.join(missing)}")
    return flags


def compile_flags() -> list[str]:
    """Every compiler flag but the paths (for "native", the same list, in the same order, as before
    TANDEM_KERNEL_ISA existed, so existing cached builds keep their key)."""
    return [FLAGS[0], *target_flags(), *FLAGS[1:]]


def _build_command(output: Path) -> list[str]:
    from torch.utils.cpp_extension import include_paths, library_paths

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    includes = [f"-I{p}" for p in include_paths()] + [f"-I{sysconfig.get_paths()['include']}"]
    libs = [f"-L{p}" for p in library_paths()] + [f"-Wl,-rpath,{p}" for p in library_paths()]
    return [COMPILER, *compile_flags(), f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *includes, *map(str, SOURCES),
            "-o", str(output), *libs, "-lc10", "-ltorch_cpu", "-ltorch"]


def library_path() -> Path:
    """Where the library for these sources, torch, compiler and CPU lives (built or not)."""
    key = hashlib.sha256()
    sources = (p.read_bytes() for p in SOURCES + HEADERS)
    for part in (*sources, torch.__version__.encode(), COMPILER.encode(), " ".join(compile_flags()).encode(),
                 cpu_flags().encode()):
        key.update(part)
    return cache_dir() / f"tandem_qlinear-{key.hexdigest()[:16]}.so"


def build() -> Path:
    """Compile the library unless a cached build exists; safe across concurrent processes."""
    target = library_path()
    if target.is_file():
        return target
    if shutil.which(COMPILER) is None:
        raise KernelBuildError(f"no C++ compiler {COMPILER!r} on PATH (set CXX) to build the quantized kernels")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        log.info("compiling quantized kernels (first use, ~30 s): %s", target)
        proc = subprocess.run(_build_command(tmp), capture_output=True, text=True)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise KernelBuildError(f"compiling {', '.join(p.name for p in SOURCES)} failed:\n{proc.stderr[-4000:]}")
        tmp.rename(target)
    return target


@cache
def available() -> bool:
    """Load the native kernels (building them if needed); False means the torch fallback is used."""
    if os.environ.get("TANDEM_NATIVE_KERNELS", "1") == "0":
        return False
    try:
        torch.ops.load_library(str(build()))
    except (KernelBuildError, OSError, RuntimeError) as exc:
        log.warning("native quantized kernels unavailable, using the slower torch fallback: %s", exc)
        return False
    return True
