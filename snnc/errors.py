"""Errors a user can act on.

Every error that reaches the command line is an ``SnncError``: its message is one line that names
the file, node or flag at fault and says what to do. The CLI prints it without a traceback.
"""


class SnncError(Exception):
    """An error caused by the user's input, reported as one line."""


class IRError(SnncError):
    """A graph that breaks an IR rule; the message names the node."""

    def __init__(self, node: str | None, message: str):
        self.node = node
        super().__init__(f"node {node!r}: {message}" if node is not None else message)


class FrontendError(SnncError):
    """A model file that cannot be imported."""


class ExportError(SnncError):
    """A graph that the requested format cannot express."""


def shown(value, limit: int = 60) -> str:
    """A value from a model as an error message shows it: its repr on one line (an array's spans
    several; control characters in text are escaped), cut at ``limit`` characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def one_line(text: str) -> str:
    """``text`` as one printable line: a control character (a newline in a file name the user gave,
    an escape sequence in a model's name) becomes a visible escape, so a message never forges a
    second line or rewrites the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] if c.isascii() else f"\\u{ord(c):04x}" for c in str(text))
