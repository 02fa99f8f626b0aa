"""Lines for the person at the terminal, on stderr."""

from __future__ import annotations

import sys


def stderr_line(line: str) -> None:
    """``line`` and its newline in one write, flushed: ranks sharing a terminal or a log file print at the same
    moment, and print()'s separate newline let another rank's line land between a message and its end."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
