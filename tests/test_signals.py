"""SIGINT or SIGTERM to the main process alone (``timeout -s INT``, a supervisor) stops the
workers and exits within seconds with 130 / 143, resumable; a second signal never hangs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_main_process_stops_the_pool_at_once(tmp_path, signum, code):
    log = tmp_path / "log"
    argv = [sys.executable, "-m", "hsmlbench.cli", "reproduce", "--tables", "T1"]
    argv += ["--methods", "maml", "--budget", "quick", "--jobs", "2", "--quiet"]
    argv += ["--out", str(tmp_path / "out")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with log.open("w") as stream:
        process = subprocess.Popen(
            argv,
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=env,
            # as from a terminal: a test run started in the background inherits SIGINT
            # ignored, and hsmlbench then keeps ignoring Ctrl-C on purpose
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    deadline = time.monotonic() + 120
    while log.read_text().count("] started ") < 2:  # both workers are inside a job
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    sent = time.monotonic()
    process.send_signal(signum)
    time.sleep(0.2)
    process.send_signal(signum)  # a second one, while it stops
    assert process.wait(timeout=30) == code, log.read_text()
    assert time.monotonic() - sent < 15
    assert "re-run the same command to resume" in log.read_text()
    assert "Traceback" not in log.read_text()
