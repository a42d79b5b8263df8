"""Input errors with the exit codes the app (and the listener) report.

Every bad input ends in ONE line on stderr, ``error[<code>]: <message>``, and this exit code
(README "Bad input" lists them with examples; docs/robustness.md shows every case tried).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: please report it (traceback in the log file, not on the console)
EXIT_USAGE = 2  # wrong command line / missing folders
EXIT_NO_DICOM = 3  # empty folder or no readable DICOM file
EXIT_NO_SERIES = 4  # DICOM present but no head NCCT series (MR, contrast CT, localizers only ...)
EXIT_BAD_SERIES = 5  # a candidate series that cannot be used (missing slices, mixed spacing ...)
EXIT_MULTIPLE_STUDIES = 6  # more than one study in the input folder
EXIT_PROCESSING = 7  # the image could not be processed (registration failed, no brain found ...)
EXIT_UNDECODABLE = 8  # pixel data that cannot be decoded (unsupported compression, corrupt stream)
EXIT_BUSY = 9  # another run holds the output folder (lock)
EXIT_SIGINT = 130  # interrupted by SIGINT (Ctrl+C): 128 + 2, as a shell reports it
EXIT_SIGTERM = 143  # stopped by SIGTERM (an orchestrator stopping the container): 128 + 15


class InputError(Exception):
    """An input problem that the user can fix; carries the app's exit code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self):
        # pickled with both arguments: a worker process's error reaches its parent intact
        return type(self), (self.code, self.message)

    def one_line(self) -> str:
        return f"error[{self.code}]: " + " ".join(self.message.split())
