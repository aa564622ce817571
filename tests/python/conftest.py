"""Starts the example servers for the python-socketio tests."""

import os
import pathlib
import re
import subprocess
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Server:
    """An example server started on a free port; its output lines are kept."""

    def __init__(self, name):
        target = pathlib.Path(os.environ.get("SIO_TARGET_DIR", ROOT / "target" / "debug"))
        self.process = subprocess.Popen(
            [str(target / name)],
            env={**os.environ, "PORT": "0"},
            stdout=subprocess.PIPE,
            text=True,
        )
        first = self.process.stdout.readline()
        match = re.search(r"listening on ([\d.]+:\d+)", first)
        assert match, f"{name} did not start: {first!r}"
        self.url = f"http://{match.group(1)}"
        self.lines = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for_line(self, pattern, timeout=5):
        """The first output line matching `pattern`, waiting for it at most `timeout` seconds."""
        regex = re.compile(pattern)
        with self.changed:
            found = self.changed.wait_for(
                lambda: any(regex.search(l) for l in self.lines), timeout
            )
            assert found, f"no line matching {pattern}: {self.lines}"
            return next(l for l in self.lines if regex.search(l))

    def stop(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="session")
def conformance():
    server = Server("conformance")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def echo():
    server = Server("echo")
    yield server
    server.stop()
