"""``python -m serve`` as a subprocess for the integration tests: one launcher instead of one per test module.

The server is started on port 0 (the kernel picks a free loopback port) with the offline flags and one
OpenMP thread; a daemon thread keeps its merged stdout/stderr in ``lines`` and takes the URL from the
first line matching ``pattern`` (``ragfix serve`` prints ``listening on http://127.0.0.1:PORT``; with
``--replicas N`` it prints ``N replicas on http://...``).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import httpx

__all__ = ["ROOT", "ServeProcess"]

ROOT = Path(__file__).resolve().parents[2]
LISTENING = r"listening on (http://127\.0\.0\.1:\d+)"


class ServeProcess:
    """``ServeProcess(["--config", path, ...], env={...})``: the running server, its log and its URL."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None, pattern: str = LISTENING) -> None:
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "serve", "--port", "0", *map(str, args)], cwd=ROOT, env=full_env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._url: list[str] = []
        self.listening = threading.Event()
        self._pattern = re.compile(pattern)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line)
            m = self._pattern.search(line)
            if m and not self._url:
                self._url.append(m.group(1))
                self.listening.set()

    def tail(self, n: int = 30) -> str:
        """The last ``n`` log lines (for failure messages)."""
        return "".join(self.lines[-n:])

    def wait_listening(self, timeout: float) -> str:
        """The server's base URL once it listens; RuntimeError with the log's tail if it does not in ``timeout`` s."""
        if not self.listening.wait(timeout):
            raise RuntimeError(f"server did not start within {timeout:.0f} s:\n" + self.tail())
        return self._url[0]

    def wait_ready(self, path: str, timeout: float) -> str:
        """Poll ``path`` (``/ready`` or ``/readyz``) until 200; only ``503 loading`` may come before it."""
        base = self.wait_listening(min(timeout, 90))
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            r = httpx.get(base + path)
            if r.status_code == 200:
                return base
            assert r.status_code == 503 and r.json()["error"]["type"] == "loading", r.text
            time.sleep(0.2)
        raise RuntimeError(f"models not ready within {timeout:.0f} s:\n" + self.tail())

    def stop(self, grace: float = 0.0) -> None:
        """SIGTERM and up to ``grace`` seconds to drain (with ``grace`` > 0), then SIGKILL if still running."""
        if self.proc.poll() is not None:
            return
        if grace > 0:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                pass
        self.proc.kill()
        self.proc.wait(10)
