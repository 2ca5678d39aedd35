"""Where `make engines` puts llama.cpp's binaries, and running llama-server for tests and benchmarks.

scripts/build_engines.sh builds llama-server and llama-bench once into
$TANDEM_ENGINES_DIR, else ${XDG_CACHE_HOME:-~/.cache}/tandem/engines (`make engines-avx2`: an
AVX2-only llama-bench beside them); TANDEM_LLAMA_SERVER names another llama-server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from engine.kernels import NO_AMX, cpu_flags

LLAMA_CPP_VERSION = "0.3.36"  # the llama-cpp-python source package whose vendored llama.cpp is built
BUILD_HINT = "run `make engines` (builds llama.cpp's llama-server and llama-bench once, ~20 min on 2 cores)"


def engines_dir() -> Path:
    if root := os.environ.get("TANDEM_ENGINES_DIR"):
        return Path(root)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tandem" / "engines"


AVX2_STAMP = "avx2 fma f16c"  # what scripts/build_engines.sh writes for its VARIANT=avx2 build


def native_stamp(flags: str) -> str:
    """What scripts/build_engines.sh writes for a native build on a CPU of `flags`: the flags, and on a
    CPU with AMX the compiler flags that leave llama.cpp's AMX matmul out (it crashes; see the script)."""
    return flags.strip() + ("\n" + " ".join(NO_AMX) if "amx_int8" in flags.split() else "")


def llama_cpp_binary(name: str, *, variant: str = "native") -> Path | None:
    """A binary `make engines` built (`llama-server`, `llama-bench`), or with
    variant "avx2" the llama-bench of `make engines-avx2`; None when it is not built for this CPU."""
    if variant not in ("native", "avx2"):
        raise ValueError(f"unknown llama.cpp build variant {variant!r}; choose native or avx2")
    dest = engines_dir() / (f"llama.cpp-{LLAMA_CPP_VERSION}" + ("-avx2" if variant == "avx2" else ""))
    built = dest / "bin" / name
    if not (built.is_file() and os.access(built, os.X_OK)):
        return None
    # A native build (GGML_NATIVE) may die of an illegal instruction on another CPU, and the AVX2 one on
    # a CPU without AVX2; the stamp says what it was built for, and `make engines` rebuilds.
    flags = cpu_flags()
    wanted = native_stamp(flags) if variant == "native" else AVX2_STAMP
    try:
        stamp = (dest / "cpu-flags").read_text().strip()
    except OSError:
        return None
    runs_here = all(f in flags.split() for f in AVX2_STAMP.split()) if variant == "avx2" else True
    return built if stamp == wanted and runs_here else None


def llama_server_binary() -> Path | None:
    """The llama-server to run: $TANDEM_LLAMA_SERVER, else the one `make engines` built for this CPU, else
    None (then BUILD_HINT says what to do)."""
    if named := os.environ.get("TANDEM_LLAMA_SERVER"):
        return Path(named) if Path(named).is_file() else None
    return llama_cpp_binary("llama-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServerProcess:
    """A llama-server serving one GGUF on loopback; `url` once it answers /health. Stop with `stop()`
    (or use it as a context manager); its log is kept for the error message if it fails to start."""

    def __init__(self, model: Path, *, slots: int = 1, context: int = 2048, threads: int = 2,
                 extra: tuple[str, ...] = (), binary: Path | None = None, start_timeout_s: float = 120.0) -> None:
        binary = binary or llama_server_binary()
        if binary is None:
            raise FileNotFoundError(f"llama-server is not built; {BUILD_HINT}")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty engine never blocks on it
        # `context` positions for each of the `slots` (llama-server splits -c among them).
        cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
               "-c", str(context * slots), "-np", str(slots), "-t", str(threads), "-tb", str(threads),
               "--no-webui", *extra]
        # ggml's OpenMP workers spin while they wait; on a machine with more busy threads than cores that
        # made a prefill ~10x slower (measured on 2 shared cores). Passive waiting unless the caller says.
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready(start_timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                output = self.output()[-2000:]
                self.stop()
                raise RuntimeError(f"llama-server exited with {self.proc.returncode} while starting: {output}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"llama-server did not become ready within {timeout_s:g} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()

    def output(self) -> str:
        """What the engine printed so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def __enter__(self) -> "LlamaServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
