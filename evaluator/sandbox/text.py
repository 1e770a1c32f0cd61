"""Candidate text made safe to show: what a program prints or raises reaches a terminal, a log and a
model's prompt, so it must not be able to move the cursor, recolour or clear the screen, or break
a one-line reason into several (a forged "valid: yes" table, say).

`printable(text, one_line)` escapes every character that is not printable -- the C0 and C1
controls (ESC and CSI among them), DEL, Unicode format characters (bidirectional overrides,
zero-width characters), line and paragraph separators and lone surrogates -- as a visible Python
escape: ESC shows as the four characters `\\x1b`, a carriage return as `\\r`. Multi-line text
keeps its newlines and tabs; a one-line text escapes those too. Backslashes are left alone, so
the escapes are readable rather than reversible.
"""
from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^\x20-\x7e]")  # candidates; each non-ASCII one is then checked on its own
_KEPT_IN_MULTI_LINE = "\n\t"
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def printable(text: str, one_line: bool) -> str:
    """`text` with its non-printable characters escaped visibly (see the module docstring)."""
    kept = "" if one_line else _KEPT_IN_MULTI_LINE

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if char in kept or char.isprintable():
            return char
        code = ord(char)
        if char in _NAMED:
            return _NAMED[char]
        if code <= 0xFF:
            return f"\\x{code:02x}"
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"

    return _UNSAFE.sub(escape, text)
