"""`make engines` binaries are found only where they were built for this CPU (a stamp beside them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.engines import AVX2_STAMP, LLAMA_CPP_VERSION, llama_cpp_binary, native_stamp
from engine.kernels import NO_AMX, cpu_flags


def install(root, folder: str, name: str, stamp: str | None):
    bin_dir = root / folder / "bin"
    bin_dir.mkdir(parents=True)
    binary = bin_dir / name
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    if stamp is not None:
        (root / folder / "cpu-flags").write_text(stamp + "\n")
    return binary


def test_native_binary_needs_this_cpus_stamp(tmp_path, monkeypatch):
    monkeypatch.setenv("TANDEM_ENGINES_DIR", str(tmp_path))
    assert llama_cpp_binary("llama-bench") is None  # not built
    binary = install(tmp_path, f"llama.cpp-{LLAMA_CPP_VERSION}", "llama-bench", native_stamp(cpu_flags()))
    assert llama_cpp_binary("llama-bench") == binary
    assert llama_cpp_binary("llama-quantize") is None  # each binary is checked on its own
    (binary.parent.parent / "cpu-flags").write_text("flags : sse2\n")  # built on another CPU
    assert llama_cpp_binary("llama-bench") is None


def test_avx2_build_is_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TANDEM_ENGINES_DIR", str(tmp_path))
    install(tmp_path, f"llama.cpp-{LLAMA_CPP_VERSION}", "llama-bench", native_stamp(cpu_flags()))
    assert llama_cpp_binary("llama-bench", variant="avx2") is None
    binary = install(tmp_path, f"llama.cpp-{LLAMA_CPP_VERSION}-avx2", "llama-bench", AVX2_STAMP)
    runs_here = all(f in cpu_flags().split() for f in AVX2_STAMP.split())
    assert llama_cpp_binary("llama-bench", variant="avx2") == (binary if runs_here else None)
    with pytest.raises(ValueError, match="unknown llama.cpp build variant 'avx512'"):
        llama_cpp_binary("llama-bench", variant="avx512")


def test_on_a_cpu_with_amx_only_a_build_without_its_amx_matmul_counts():
    """llama.cpp's AMX matmul dies with SIGILL in the pinned version (scripts/build_engines.sh), so a
    native build made before the script left it out is not this CPU's build."""
    amx = "flags : fpu avx2 avx512f amx_tile amx_int8"
    assert native_stamp(amx) == amx + "\n" + " ".join(NO_AMX)
    assert native_stamp("flags : fpu avx2 avx512f") == "flags : fpu avx2 avx512f"
    script = (Path(__file__).parent.parent / "scripts" / "build_engines.sh").read_text()
    assert f'NO_AMX="{" ".join(NO_AMX)}"' in script  # the flags the stamp names are the ones it builds with
