"""What the package tests share: commands, ports, waiting, and reading the station's database
the way IT would (sqlite3, read-only)."""

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import free_port, wait_until  # noqa: E402,F401  (one copy for every test)


def run(cmd, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def connectable(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stored_values(db: Path, device: str):
    """The values of `device`'s vitals in the order they were measured ([] while the
    database is not there yet)."""
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        rows = [r[0] for r in c.execute(
            "SELECT value FROM vitals WHERE device = ? ORDER BY ts_ms", (device,))]
        c.close()
        return rows
    except sqlite3.Error:
        return []
