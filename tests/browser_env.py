"""What the headless-browser tests share: the Debian Chromium they drive, its flags, whether it is
there, and a free loopback port for the app under test."""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
NO_CHROMIUM = f"headless browser test needs Chromium at {CHROMIUM} (apt-get install -y chromium)"


def chromium_found() -> bool:
    return Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
