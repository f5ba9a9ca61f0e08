"""Whether a header can go into an HTTP/1.1 request head: the check config validation and the
providers' HTTP clients share (no CR, LF or NUL in a value: no header injection)."""

from __future__ import annotations

import re

#: A header name (RFC 9110 token); a value may hold no control character but HTAB.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_NAMES = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\x00": "a NUL"}


def header_problem(name: str, value: str) -> str | None:
    """Why ``name: value`` cannot go into a request head, or None if it can. The answer never
    quotes the value (it may be a secret)."""
    if not _TOKEN.fullmatch(name):
        return (
            "its name is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~ only; no "
            "spaces, colons or line breaks)"
        )
    if match := _VALUE_CONTROL.search(value):
        char = match.group()
        what = _CONTROL_NAMES.get(char, f"the control character U+{ord(char):04X}")
        return f"its value contains {what}, which could inject other headers"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return "its value has characters outside Latin-1 (percent- or base64-encode them)"
    return None
