"""The real station window under a virtual display, driven through WebDriver (tauri-driver
in front of Debian's WebKitWebDriver). Shared by the end-to-end tests and the frame-time
benchmark (bench_frames.py)."""

import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.options import ArgOptions

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    # The OS picks; WebDriver servers take a port number, not a listening socket.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, timeout, probe):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def virtual_display(size="1280x800x24"):
    # -displayfd: Xvfb chooses a free display and tells us which; no stale display is reused.
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        display = ":" + f.readline().strip()
    assert proc.poll() is None, "Xvfb exited"
    try:
        yield display
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return "(no tauri-driver log)"


@contextmanager
def station_window(app: Path, display: str, cfg: Path, log_path: Path):
    """Starts the station app with config `cfg` in a WebDriver session; yields the driver."""
    assert app.exists(), f"{app} missing: make test builds it"
    tauri_driver = shutil.which("tauri-driver") or str(Path.home() / ".cargo/bin/tauri-driver")
    port, native_port = free_port(), free_port()
    home = cfg.parent / "home"
    # The webview keeps its own storage under the XDG directories: point them into the test's
    # temp dir so no run sees another's state, and no test writes into a real user's home.
    env = dict(
        os.environ,
        DISPLAY=display,
        WARDWATCH_CONFIG=str(cfg),
        WARDWATCH_FORBID_DEFAULT_DATA_DIR="1",
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_CONFIG_HOME=str(home / "config"),
    )
    log = open(log_path, "wb")
    td = subprocess.Popen(
        [tauri_driver, "--port", str(port), "--native-port", str(native_port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def listening(p):
        assert td.poll() is None, "tauri-driver exited: " + read_log(log_path)
        try:
            with socket.create_connection(("127.0.0.1", p), timeout=0.5):
                return True
        except OSError:
            return False

    try:
        # tauri-driver proxies to WebKitWebDriver on the native port; a session request made
        # before both listen is dropped without a response.
        wait_until("tauri-driver", 30, lambda: listening(port))
        wait_until("WebKitWebDriver", 30, lambda: listening(native_port))
        opts = ArgOptions()
        opts.set_capability("browserName", "wry")
        opts.set_capability("tauri:options", {"application": str(app)})
        try:
            drv = webdriver.Remote(command_executor=f"http://127.0.0.1:{port}", options=opts)
        except Exception:
            print(read_log(log_path))
            raise
        try:
            yield drv
        finally:
            drv.quit()
    finally:
        td.terminate()
        td.wait(timeout=10)
        log.close()
