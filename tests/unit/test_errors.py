"""Text an engine wrote is escaped before it reaches a terminal (issue 7, item 8)."""

from __future__ import annotations

from docker_d2d.errors import printable


def test_printable_escapes_terminal_control_characters() -> None:
    assert printable("boom \x1b[2J\x1b]0;pwned\x07\r\n") == "boom \\x1b[2J\\x1b]0;pwned\\x07\\r\\n"
    assert printable("caf\u00e9 \u202eevil") == "caf\u00e9 \\u202eevil"  # a bidi override too
    assert printable("plain: image x:1 (5 MB)") == "plain: image x:1 (5 MB)"
