"""Text from data, made safe to print on a terminal.

Imported files, model outputs and query results may hold control characters: an escape
sequence (``ESC ] 0 ; title BEL``, ``CSI 31 m``) would retitle, recolour or rewrite the
user's terminal, a carriage return would overwrite the line, and Unicode bidi overrides
(U+202E) would display text other than what is there. :func:`printable` shows each such
character as an escape (``\\x1b``, ``\\u202e``); newlines and tabs stay. Every command
that echoes text from data (`sql`, `lineage`, `diff`, `status`, `seed import`, their
errors) prints through :func:`echo`.
"""

from __future__ import annotations

import re

import click

# C0 controls but \t and \n, DEL, C1 controls (\x9b is a one-byte CSI), bidi embeddings /
# overrides / isolates and the line / paragraph separators
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def _escape_json(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def printable(text: object, json: bool = False) -> str:
    """``text`` with every terminal control character escaped (newlines and tabs kept).

    ``json=True`` escapes as ``\\u001b`` so JSON text stays valid JSON with the same
    value (in JSON these characters can only occur inside strings).
    """
    return _UNSAFE.sub(_escape_json if json else _escape, str(text))


def echo(text: object = "", err: bool = False, json: bool = False) -> None:
    """click.echo of :func:`printable` text."""
    click.echo(printable(text, json=json), err=err)


class SafeClickException(click.ClickException):
    """A ClickException whose message (it may quote data) is printed escaped."""

    def __init__(self, message: object) -> None:
        super().__init__(printable(message))


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none), for a
    one-line error."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
