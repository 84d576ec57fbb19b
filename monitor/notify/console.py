"""The console notifier: prints each digest (used when no Slack destination is configured)."""

from __future__ import annotations

import sys
from typing import TextIO

from monitor import digest


class ConsoleNotifier:
    destination = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def send(self, payload: dict, dedup_key: str) -> None:
        out = self.stream or sys.stdout
        rule = "-" * 78
        out.write(f"{rule}\n{digest.render_text(payload)}\n{rule}\n")
        out.flush()
