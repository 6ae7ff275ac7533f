"""Frame times of the real station window with 32 and 64 live bed tiles (`make bench`).

The station app (debug build: the page and its drawing are the same code as release; the
Rust side's hot crates are optimised in debug too) runs under Xvfb with a simulated ward of
N beds. After a warm-up, the page records requestAnimationFrame timestamps for 20 s while it
draws every tile's ECG sweep, numerics and alarms; frame time is the gap between frames.
Results go into docs/BENCHMARKS.md between the `bench:frames` markers.

Usage: python tests/e2e/bench_frames.py [--out docs/BENCHMARKS.md] [--seconds 20]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, station_window, virtual_display, wait_until  # noqa: E402

from selenium.webdriver.common.by import By  # noqa: E402

APP = ROOT / "target" / "debug" / "wardwatch-station"

RECORD = """
const done = arguments[arguments.length - 1];
const seconds = arguments[0];
const stamps = [];
const end = performance.now() + seconds * 1000;
function frame(t) {
  stamps.push(t);
  if (t < end) requestAnimationFrame(frame); else done(stamps);
}
requestAnimationFrame(frame);
"""


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, round((len(s) - 1) * p))]


def measure(beds: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = tmp / "station.toml"
        cfg.write_text(
            f'[station]\nname = "Frames {beds}"\ndata_dir = "{tmp / "data"}"\n'
            f'[broker]\nlisten = "127.0.0.1:0"\n[sim]\nbeds = {beds}\n[alarms]\nnotifications = false\n'
            + "".join(f'[[beds]]\nid = "bed-{i:02}"\nlabel = "Bed {i}"\ndevice = "sim-{i:02}"\n' for i in range(1, beds + 1))
        )
        with virtual_display("1920x1080x24") as display:
            with station_window(APP, display, cfg, tmp / "tauri-driver.log") as drv:
                drv.set_window_size(1920, 1080)
                drv.set_script_timeout(seconds + 30)
                wait_until(f"{beds} tiles", 60, lambda: len(drv.find_elements(By.CSS_SELECTOR, '[data-testid^="tile-bed-"]')) == beds)
                time.sleep(10)  # every monitor connected and streaming
                stamps = drv.execute_async_script(RECORD, seconds)
                size = drv.execute_script("return [window.innerWidth, window.innerHeight, window.devicePixelRatio]")
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    span = (stamps[-1] - stamps[0]) / 1000
    return {
        "beds": beds,
        "frames": len(gaps),
        "fps": len(gaps) / span,
        "p50": percentile(gaps, 0.5),
        "p99": percentile(gaps, 0.99),
        "max": max(gaps),
        "size": size,
    }


def report(results) -> str:
    out = "| tiles | frames/s | frame time p50 | p99 | max | target | ratio to target (p99) |\n|---|---|---|---|---|---|---|\n"
    for r in results:
        out += (
            f"| {r['beds']} | {r['fps']:.1f} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['max']:.1f} ms "
            f"| 60 fps, p99 ≤ 20 ms | {r['p99'] / 20:.2f} |\n"
        )
    w, h, dpr = results[0]["size"]
    out += (
        f"\nThe real window (WebKitGTK) under Xvfb at {w}×{h} (device pixel ratio {dpr}), software "
        "rendering, on the same 2-core machine as the station and the simulator; "
        f"{results[0]['frames']} frames or more per run.\n"
    )
    return out


def write_section(path: Path, name: str, body: str) -> None:
    text = path.read_text()
    open_, close = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    a, b = text.index(open_), text.index(close)
    path.write_text(text[:a] + open_ + "\n" + body + text[b:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seconds", type=float, default=20)
    a = ap.parse_args()
    results = [measure(n, a.seconds) for n in (32, 64)]
    text = report(results)
    print(text)
    if a.out:
        write_section(a.out, "frames", text)
        print(f"written to {a.out}")


if __name__ == "__main__":
    main()
