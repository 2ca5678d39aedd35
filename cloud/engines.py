"""Where `make engines` puts llama.cpp's llama-server, and running one for tests and benchmarks.

scripts/build_engines.sh builds it once into $TANDEM_ENGINES_DIR, else
${XDG_CACHE_HOME:-~/.cache}/tandem/engines; TANDEM_LLAMA_SERVER names another binary.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from engine.kernels import cpu_flags

LLAMA_CPP_VERSION = "0.3.36"  # the llama-cpp-python source package whose vendored llama.cpp is built
BUILD_HINT = "run `make engines` (builds llama.cpp's llama-server once, ~20 min on 2 cores)"


def engines_dir() -> Path:
    if root := os.environ.get("TANDEM_ENGINES_DIR"):
        return Path(root)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tandem" / "engines"


def llama_server_binary() -> Path | None:
    """The llama-server to run: $TANDEM_LLAMA_SERVER, else the one `make engines` built for this CPU, else
    None (then BUILD_HINT says what to do)."""
    if named := os.environ.get("TANDEM_LLAMA_SERVER"):
        return Path(named) if Path(named).is_file() else None
    dest = engines_dir() / f"llama.cpp-{LLAMA_CPP_VERSION}"
    built = dest / "bin" / "llama-server"
    if not (built.is_file() and os.access(built, os.X_OK)):
        return None
    try:  # built with GGML_NATIVE: on another CPU it may die of an illegal instruction; `make engines` rebuilds
        same_cpu = (dest / "cpu-flags").read_text().strip() == cpu_flags().strip()
    except OSError:
        same_cpu = False
    return built if same_cpu else None


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
