"""The request log: one JSON object per line on stderr (logger `hearth.requests`), written off the event loop.

Lines are gathered on the event loop for 50 ms and handed to a writer thread as one record: a write and a
flush per request on the loop were a system call each, and waking the thread for every line cost each
request a GIL switch while the next one was being served (21 µs of `put_nowait` per request under the
profiler at concurrency 1, plus the switch). `line()` skips the logging machinery (the caller's frame
lookup and a LogRecord, about 30 µs a request) when that batch is the logger's only way out; a logger set up
otherwise (a test's capture, an embedding application's own handlers) gets a normal `info` call.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import logging.handlers
import queue
import sys

requests_log = logging.getLogger("hearth.requests")


class LineBatch(logging.Handler):
    """Lines held on the event loop for 50 ms, then put on the writer thread's queue as one record."""

    def __init__(self, lines: queue.SimpleQueue[logging.LogRecord]) -> None:
        super().__init__()
        self.queue = lines
        self.held: list[str] = []

    def add(self, text: str) -> None:
        self.held.append(text)
        if len(self.held) == 1:
            try:
                asyncio.get_running_loop().call_later(0.05, self.flush)
            except RuntimeError:  # logged outside the event loop: written at once
                self.flush()

    def emit(self, record: logging.LogRecord) -> None:
        self.add(record.getMessage())

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            if not self.held:
                return
            text, self.held = "\n".join(self.held), []
        self.queue.put_nowait(logging.makeLogRecord({"msg": text, "levelno": logging.INFO, "levelname": "INFO"}))


def line(text: str) -> None:
    """Log one request line (the caller checked `requests_log.isEnabledFor(logging.INFO)`)."""
    handlers = requests_log.handlers
    if len(handlers) == 1 and type(handlers[0]) is LineBatch and not requests_log.filters:
        handlers[0].add(text)
    else:
        requests_log.info(text)


def setup(enabled: bool) -> None:
    """Lines without the text log's prefix, so log shippers parse them as they are."""
    requests_log.propagate = False
    requests_log.setLevel(logging.INFO if enabled else logging.WARNING)
    if enabled and not requests_log.handlers:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(message)s"))
        lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(lines, stream)
        listener.start()
        batch = LineBatch(lines)
        atexit.register(listener.stop)  # runs after the flush below (atexit goes last in, first out)
        atexit.register(batch.flush)  # what is held is written before the process ends
        requests_log.addHandler(batch)
