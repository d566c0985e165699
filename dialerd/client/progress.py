"""A progress bar for imports, drawn on stderr only when it is a terminal.

The bar counts what has been sent: bytes against the file's size, and rows (lines) per
second. The daemon reads and stages rows as they arrive, but the kernel and the server
buffer a few megabytes, so once the last byte is sent the bar says so and counts the
seconds until the daemon answers. Imports that finish within ``QUIET_SECONDS`` draw
nothing; when stderr is not a terminal nothing is drawn at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import BinaryIO, Final, TextIO

CHUNK: Final = 64 * 1024
QUIET_SECONDS: Final = 0.5
REDRAW_SECONDS: Final = 0.2
WIDTH: Final = 24


class Progress:
    """Counts bytes and lines as they are sent; a thread redraws the bar on a terminal."""

    def __init__(self, stream: TextIO, total_bytes: int, label: str, *, header: bool) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.total = total_bytes
        self.label = label
        self.sent = 0
        self.rows = -1 if header else 0  # a CSV file's header line is no row
        self.started = time.monotonic()
        self.sent_at: float | None = None
        self.drawn = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if self.enabled:
            self._thread = threading.Thread(target=self._redraw, name="progress", daemon=True)
            self._thread.start()

    def advance(self, size: int, lines: int) -> None:
        self.sent += size
        self.rows += lines
        if self.sent >= self.total and self.sent_at is None:
            self.sent_at = time.monotonic()

    def _redraw(self) -> None:
        if self._done.wait(QUIET_SECONDS):
            return
        while not self._done.is_set():
            self.stream.write("\r\x1b[K" + self.line(time.monotonic()))
            self.stream.flush()
            self.drawn = True
            self._done.wait(REDRAW_SECONDS)

    def line(self, now: float) -> str:
        """The bar as it stands at ``now``."""
        fraction = min(self.sent / self.total, 1.0) if self.total else 1.0
        filled = int(fraction * WIDTH)
        bar = f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {fraction:4.0%}"
        if self.sent_at is not None:
            waited = now - self.sent_at
            return f"{bar}  {self.rows:,} rows sent; daemon storing them ({waited:.0f}s)"
        rate = self.rows / max(now - self.started, 1e-6)
        return f"{bar}  {self.rows:,} rows  {rate:,.0f} rows/s"

    def finish(self, rows: int | None = None) -> None:
        """Stop drawing; a bar that was shown becomes one summary line."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if self.drawn:
            elapsed = time.monotonic() - self.started
            summary = ""
            if rows is not None:
                summary = f"{rows:,} rows in {elapsed:.1f}s ({rows / elapsed:,.0f} rows/s)\n"
            self.stream.write("\r\x1b[K" + summary)
            self.stream.flush()


def chunks(source: BinaryIO, progress: Progress) -> Iterator[bytes]:
    """The file's bytes, counted as they are handed to the HTTP client."""
    while chunk := source.read(CHUNK):
        progress.advance(len(chunk), chunk.count(b"\n"))
        yield chunk
