"""The app's console log: one line per record, INFO and up; tracebacks go to OUTPUT/app.log only."""

from __future__ import annotations

import logging
import os
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ConsoleFormatter(logging.Formatter):
    """Console lines without tracebacks (libraries log some on bad pixel data): those go to
    app.log only, the console keeps one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            text = super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        return text + (" (traceback in app.log)" if saved[0] else "")


def console_policy() -> None:
    """The console (stderr) handlers: INFO and up, no tracebacks. Applied again after the SDK's
    own logging set-up, which replaces the root handlers."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.INFO)
            handler.setFormatter(ConsoleFormatter(handler.formatter._fmt if handler.formatter else None))


def hold_log_handlers() -> None:
    """Take every handler's lock and keep it (the process ends right after): a stage still running
    on another thread cannot log a line after the error line, on the console or in app.log."""
    for handler in logging.getLogger().handlers:
        handler.flush()
        handler.acquire()


def last_console_line(line: str) -> None:
    """``line`` on stderr, then stdout and stderr point at /dev/null: nothing another thread or a
    library writes (Python or C) can follow it on the console."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    console = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.write(console, (line + "\n").encode())

