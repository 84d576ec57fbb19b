"""The console notifier: prints each digest (used when no Slack destination is configured),
with the same content as Slack's (inhibition included: ``monitor.delivery.inhibit``).

Everything printed to a terminal passes :func:`terminal_safe`: config text (rule names, explain),
database content and remote answers must not drive the terminal with control sequences.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1 control characters


def terminal_safe(text: str, keep: str = "") -> str:
    """Return ``text`` with every C0/C1 control character (and DEL) written as a visible escape
    (ESC -> ``\\x1b``), except the characters in ``keep`` (e.g. ``"\\n"`` for multi-line text)."""
    return _CONTROL.sub(lambda m: m.group() if m.group() in keep else f"\\x{ord(m.group()):02x}",
                        text)


class ConsoleNotifier:
    """Prints each digest as plain text (``digest.render_text``), inhibited like Slack's
    (``inhibit``: ``notify.inhibit``; a firing critical alert folds the lower-severity ones)."""

    destination = "console"

    def __init__(self, stream: TextIO | None = None, inhibit: bool = True) -> None:
        self.stream = stream
        self.inhibit = inhibit

    def send(self, payload: dict, dedup_key: str) -> None:
        out = self.stream or sys.stdout
        rule = "-" * 78
        from monitor.delivery import digest  # here: `terminal_safe` alone serves every command

        text = digest.render_text(payload, inhibit=self.inhibit)
        out.write(f"{rule}\n{terminal_safe(text, keep=chr(10))}\n{rule}\n")
        out.flush()
