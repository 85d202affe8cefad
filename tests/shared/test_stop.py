"""StopRequest: a storm of signals while the main thread waits never deadlocks it.

The supervisor used to set a `threading.Event` from its signal handler while the main thread
waited on that event: a signal landing while the main thread held the event's lock made the
handler wait for its own thread forever (`make up` then ignored every further Ctrl+C).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

CHILD = textwrap.dedent(
    """
    import os, sys
    from tributary.stop import StopRequest

    stop = StopRequest().install()
    print("ready", flush=True)
    while stop.count < int(sys.argv[1]):
        stop.wait(0.0005)  # the main thread in and out of the event's lock, all the time
    print("stopped", stop.count, flush=True)
    os._exit(0)  # the storm goes on: no interpreter shutdown with default handlers back
    """
)


def test_a_signal_storm_during_waits_is_counted_and_never_deadlocks() -> None:
    wanted = 300
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(wanted)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    sent = 0
    while child.poll() is None and time.monotonic() < deadline:
        child.send_signal(signal.SIGTERM if sent % 2 else signal.SIGINT)
        sent += 1
        time.sleep(0.0002)
    if child.poll() is None:
        child.kill()
        child.wait()
    out = child.stdout.read()
    child.stdout.close()
    assert child.returncode == 0, f"exit {child.returncode} after {sent} signals: {out!r}"
    word, count = out.split()
    assert word == "stopped"
    assert int(count) >= wanted  # the watcher reads bytes in chunks: it may count past it


def test_callbacks_run_on_the_watcher_thread_with_the_signal_count() -> None:
    code = textwrap.dedent(
        """
        import os, signal, threading
        from tributary.stop import StopRequest

        seen = []
        done = threading.Event()
        stop = StopRequest().install()
        stop.on_request(lambda n: (seen.append((n, threading.current_thread().name)),
                                   n == 2 and done.set()))
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(10)
        os.kill(os.getpid(), signal.SIGINT)
        assert done.wait(10)
        stop.uninstall()
        print(seen)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[(1, 'stop-request'), (2, 'stop-request')]"
