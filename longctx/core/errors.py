"""User-facing errors.

Library code raises :class:`LongctxError` for anything the *user* can fix (a bad file, a wrong
flag). The CLI prints its message on one line and exits with status 2, instead of a traceback.
The message must name the file, line/record and field where that applies.
"""


class LongctxError(Exception):
    """An error caused by user input; its message is shown as-is, without a traceback."""


def where(path: object, line: int | None = None, field: str | None = None) -> str:
    """Format a location prefix such as ``data.jsonl:12: messages[1].role``."""
    out = str(path)
    if line is not None:
        out += f":{line}"
    if field:
        out += f": {field}"
    return out
