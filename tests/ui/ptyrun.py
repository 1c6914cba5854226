"""The real `vgtui` on a real pseudo-terminal, as a person over SSH runs it: a session of its own with the pty as its
controlling terminal, so closing the terminal sends SIGHUP exactly as a dropped SSH connection does."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import sys
import termios
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[PX^_].*?\x1b\\|\x1b\][^\x07]*(\x07|\x1b\\)|\x1b[()][0-9A-Za-z]")


class Tty:
    def __init__(self, args: list[str], size: tuple[int, int] = (120, 40), env: dict[str, str] | None = None):
        full_env = {**os.environ, "TERM": "xterm-256color", "VGTUI_DATA": "/nonexistent-vgtui-data",
                    "PYTHONPATH": str(ROOT), **(env or {})}
        full_env.pop("NO_COLOR", None)
        pid, fd = pty.fork()
        if pid == 0:  # the child: a new session whose controlling terminal is the pty
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "vgtui", *args], full_env)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        self.out = bytearray()
        self.status: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            self.out.extend(data)

    @property
    def text(self) -> str:
        return ANSI.sub(b"", bytes(self.out)).decode("utf-8", "replace")

    def wait_text(self, text: str, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.text:
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not on the terminal after {timeout} s")

    def send(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def hang_up(self) -> None:
        """The terminal goes away (an SSH connection dropping): the session leader gets SIGHUP."""
        os.close(self.fd)

    def wait(self, timeout: float = 30.0) -> int:
        """The exit status as a shell reports it (128 + signal for a death by signal)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
                if self.status < 0:
                    self.status = 128 - self.status
                return self.status
            time.sleep(0.02)
        raise AssertionError(f"vgtui still running after {timeout} s")

    def __enter__(self) -> "Tty":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def kill(self) -> None:
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
