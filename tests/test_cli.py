"""The `tandem` command as a user runs it: a real subprocess, the real model.

The README's own commands (generate, --json, models) run as typed in test_readme.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.conftest import REPO


def tandem(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tandem", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_missing_model_is_a_clear_error():
    result = tandem("generate", "x", "--model", "/no/such/model.gguf")
    assert result.returncode == 1
    assert "no model at '/no/such/model.gguf'" in result.stderr
    assert "Traceback" not in result.stderr


def test_prompt_longer_than_context_is_a_clear_error():
    result = tandem("generate", "word " * 600, "--max-context", "256", "--max-new-tokens", "8")
    assert result.returncode == 1
    assert "longer than the model's context of 256 tokens" in result.stderr


def test_help_is_for_users_and_imports_neither_torch_nor_grpc():
    code = ("import contextlib, io, sys\nfrom tandem.cli import main\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n    try:\n        main(['--help'])\n    except SystemExit:\n"
            "        pass\nprint(out.getvalue())\nprint('torch' in sys.modules, 'grpc' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    text, imported = result.stdout.rstrip().rsplit("\n", 1)
    assert imported == "False False"
    assert "Tandem: edge-cloud split inference" in text and "tandem demo" in text
    assert "registers its own subcommands" not in text  # the module's docstring is for developers


def test_max_new_tokens_below_one_names_the_flag():
    for value in ("-1", "0", "many"):
        result = tandem("generate", "Hi", "--max-new-tokens", value)
        assert result.returncode == 2 and "argument --max-new-tokens: " in result.stderr, result.stderr
        assert "KV cache" not in result.stderr and "Traceback" not in result.stderr
    result = tandem("generate", "Hi", "--top-p", "1.5")
    assert result.returncode == 2 and "argument --top-p: 1.5 is not allowed" in result.stderr


def serve(*args: str) -> subprocess.CompletedProcess:
    return tandem("serve-cloud", "--max-context", "256", *args, timeout=120)


def test_serve_cloud_checks_ports_and_names_the_flag(tmp_path):
    result = serve("--port", "99999")
    assert result.returncode == 2 and "argument --port: 99999 is not a TCP port: give 1-65535" in result.stderr
    result = serve("--metrics-port", "-5")
    assert result.returncode == 2 and "argument --metrics-port: -5 is not a TCP port" in result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = serve("--port", port)
        assert result.returncode == 1, result.stderr
        assert f"--port: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
        result = serve("--port", "0", "--metrics-port", port)
        assert result.returncode == 1, result.stderr
        assert f"--metrics-port: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    for stderr in (result.stderr,):
        assert "Failed to add port" not in stderr and "Traceback" not in stderr
    result = serve("--host", "no-such-host.invalid")
    assert result.returncode == 1 and "--host 'no-such-host.invalid' cannot be resolved" in result.stderr


def test_serve_cloud_names_a_missing_or_empty_token_file(tmp_path):
    tokens = tmp_path / "tokens.txt"
    result = serve("--port", "0", "--auth-token-file", str(tokens))
    assert result.returncode == 2 and f"argument --auth-token-file: no such file: '{tokens}'" in result.stderr
    tokens.write_text("\n# nothing yet\n")
    result = serve("--port", "0", "--auth-token-file", str(tokens))
    assert result.returncode == 1 and f"--auth-token-file: auth token file {tokens} holds no token" in result.stderr


def test_healthcheck_has_help_and_checks_its_target():
    def probe(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cloud.healthcheck", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=60)

    result = probe("--help")
    assert result.returncode == 0 and "HOST:PORT" in result.stdout and "NOT SERVING" not in result.stderr
    result = probe("http://127.0.0.1:50051")
    assert result.returncode == 2 and "gRPC addresses have no scheme" in result.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    result = probe(dead, "--timeout", "1")
    assert result.returncode == 1 and f"NOT SERVING ({dead} did not answer" in result.stderr


def test_the_cli_silences_grpcs_own_log_lines():
    """gRPC's C core prints e.g. "E... Failed to add port" itself; the CLI sets GRPC_VERBOSITY
    before grpc loads. The peer run without it shows the line, so this test can fail."""
    code = ("import socket, sys\nfrom concurrent import futures\nfrom tandem.cli import quiet_grpc\n"
            "if sys.argv[1] == 'quiet':\n    quiet_grpc(verbose=False)\nimport grpc\n"
            "busy = socket.socket(); busy.bind(('127.0.0.1', 0)); busy.listen()\n"
            "server = grpc.server(futures.ThreadPoolExecutor(1))\ntry:\n"
            "    server.add_insecure_port(f'127.0.0.1:{busy.getsockname()[1]}')\nexcept RuntimeError:\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    runs = {mode: subprocess.run([sys.executable, "-c", code, mode], cwd=REPO, capture_output=True, text=True,
                                 timeout=60, env=env) for mode in ("loud", "quiet")}
    assert "Failed to add port" in runs["loud"].stderr
    assert runs["quiet"].stderr == "" and runs["quiet"].returncode == 0
