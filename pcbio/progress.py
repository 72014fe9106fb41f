"""Progress messages for long runs, on stderr; silenced with ``quiet=True`` (``--quiet``)."""

import sys
import time
from typing import Callable

#: what a long run takes as ``progress``: called as ``progress(message)`` or
#: ``progress(message, fraction=0.4)`` — a :class:`Progress`, :data:`SILENT` or any function
Reporter = Callable[..., None]


class Progress:
    """Callable reporter: ``progress("simulating", fraction=0.4)``."""

    def __init__(self, quiet=False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.start = time.monotonic()

    def __call__(self, message, fraction=None):
        if self.quiet:
            return
        done = "" if fraction is None else f" {100 * fraction:5.1f}%"
        print(f"[pcbio {time.monotonic() - self.start:7.1f}s]{done} {message}", file=self.stream,
              flush=True)


SILENT = Progress(quiet=True)
