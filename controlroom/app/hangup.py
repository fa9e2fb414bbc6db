"""The app's own terminal going away (SIGHUP: the SSH session dropped, the tmux pane killed) ends the app, without
writing to that terminal and without hanging; the server and its deploy go on.

What hung before (about 1 run in 5 under load): Textual's writer thread died of EIO on the vanished terminal, its
queue filled, and the main thread blocked for good in `WriterThread.write` (Queue.put); the SIGCONT the kernel sends
after SIGHUP made Textual's driver start application mode again (a second writer, a second input thread spinning
on the dead terminal). The handler below runs in the main thread even while it waits in Queue.put (a lock wait is
interrupted for signal handlers): it stops SIGCONT from restarting the driver, points the standard streams away
from the terminal (writes go nowhere, reads never come), empties the writer's queue so a blocked put returns, and
replaces the driver's write with nothing, and asks the app to exit; should it not be gone within GRACE seconds, the process ends there (the demo's reaper and the
server clean up after it either way).
"""

from __future__ import annotations

import os
import queue
import signal
import threading

GRACE = 5.0  # seconds the app has to end by itself once its terminal went away


def _off_the_terminal() -> None:
    """stdout and stderr to /dev/null, stdin to a pipe nobody writes (never readable, never EOF)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    quiet, _keep = os.pipe()
    _off_the_terminal.kept = _keep  # type: ignore[attr-defined]  # the write end stays open: no EOF either
    for fd, to in ((0, quiet), (1, devnull), (2, devnull)):
        try:
            os.dup2(to, fd)
        except OSError:
            pass


def _drain(driver) -> None:
    """Empty the queue of Textual's writer thread (dead of EIO, or alive), so a put blocked on it returns."""
    writer = getattr(driver, "_writer_thread", None)
    q = getattr(writer, "_queue", None)
    if not isinstance(q, queue.Queue):
        return
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


def _nothing(*_args) -> None:
    return None


def end_on_hangup(app, code: int = 128 + signal.SIGHUP) -> None:
    """Install the SIGHUP handler for the app's run (call before app.run())."""

    def hung_up(signum, frame) -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGCONT, signal.SIG_DFL)  # Textual's driver resumes itself on SIGCONT: not any more
        bound = threading.Timer(GRACE, os._exit, args=(code,))
        bound.daemon = True
        bound.start()
        _off_the_terminal()
        driver = getattr(app, "_driver", None)
        if driver is not None:
            driver._auto_restart = False
            driver.write = driver.flush = _nothing  # what the app still paints goes nowhere, never blocks
            _drain(driver)
        loop = getattr(app, "_loop", None)
        try:
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(app.exit, None, code)
        except RuntimeError:  # the loop is already gone: the app is ending anyway
            pass

    signal.signal(signal.SIGHUP, hung_up)
