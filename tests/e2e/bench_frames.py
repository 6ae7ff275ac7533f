"""Frame times of the real station window (`make bench`): the floor, then 16, 32 and 64 live
beds, and the longest frame while a sign-in and a 30 s strip export run.

The station app (debug build: the page and its drawing are the same code as release) runs
under Xvfb at 1920x1080, opening maximized by itself. The simulated ward runs in its own
process (`wardwatch sim`, release build when there is one) against the station's embedded
broker, as real monitors would: none of its work is in the window's process.

Per run, after a warm-up, the page records requestAnimationFrame timestamps (frame time is the
gap between frames) and the script time of each paint (TraceCanvas.paint, read from
window.wardwatchFrameStats); /proc gives the CPU of the window's UI process and of its
WebKitWebProcess over the same seconds. The floor is the same window with no beds: the
display's own requestAnimationFrame cadence on this machine, the best any page can do here.

Results go into docs/BENCHMARKS.md between the `bench:frames` markers, as ratios to the floor.
Nothing here is asserted: `make test` never checks time.

Usage: python tests/e2e/bench_frames.py [--out docs/BENCHMARKS.md] [--seconds 20]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, station_window, virtual_display, wait_until  # noqa: E402

from selenium.webdriver.common.by import By  # noqa: E402

APP = ROOT / "target" / "debug" / "wardwatch-station"
SIM = next(
    (p for p in (ROOT / "target" / "release" / "wardwatch", ROOT / "target" / "debug" / "wardwatch") if p.exists()),
    ROOT / "target" / "debug" / "wardwatch",
)
USER, PASSWORD = "bench.nurse", "bench-nurse-pass"
TICKS = os.sysconf("SC_CLK_TCK")

# Starts recording in the page without blocking the WebDriver session, so the benchmark can
# drive commands while frames are recorded.
START = """
window.__bench = { stamps: [], script: [], until: performance.now() + arguments[0] * 1000, done: false };
const b = window.__bench;
function frame(t) {
  b.stamps.push(t);
  b.script.push(window.wardwatchFrameStats ? window.wardwatchFrameStats.scriptMs : 0);
  if (t < b.until) requestAnimationFrame(frame); else b.done = true;
}
requestAnimationFrame(frame);
"""
RESULT = "return window.__bench.done ? [window.__bench.stamps, window.__bench.script] : null"

# A sign-in (argon2 in the core) and a 30 s ECG strip export (plotters), invoked as the
# window's own buttons do, each awaited; returns when both are done, with their times.
COMMANDS = """
const done = arguments[arguments.length - 1];
const [user, password, bed] = [arguments[0], arguments[1], arguments[2]];
const invoke = window.__TAURI_INTERNALS__.invoke;
(async () => {
  const t0 = performance.now();
  await invoke("session_login", { args: { username: user, secret: password } });
  const t1 = performance.now();
  const now = Date.now();
  const request = { kind: "strip", bed, from_ms: now - 40000, seconds: 30, format: "png" };
  const path = await invoke("review_export", { args: { request } });
  const t2 = performance.now();
  done([t0, t1, t2, path]);
})().catch((e) => done(["error", JSON.stringify(e)]));
"""


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, round((len(s) - 1) * p))]


def cpu_ticks(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def processes():
    """The window's UI process and its WebKitWebProcess(es), by command name."""
    ui, web = [], []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            comm = (d / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("wardwatch-stati"):
            ui.append(int(d.name))
        elif comm.startswith("WebKitWebProces"):
            web.append(int(d.name))
    return ui, web


def config(tmp: Path, beds: int) -> Path:
    cfg = tmp / "station.toml"
    # The floor has no beds at all: a top-level empty array replaces the default beds.
    cfg.write_text(
        ("beds = []\n" if beds == 0 else "")
        + f'[station]\nname = "Frames {beds}"\ndata_dir = "{tmp / "data"}"\n'
        '[broker]\nlisten = "127.0.0.1:0"\nallow_anonymous = true\n[alarms]\nnotifications = false\n'
        '[sentinel]\nenabled = false\n'
        + "".join(f'[[beds]]\nid = "bed-{i:02}"\nlabel = "Bed {i}"\ndevice = "sim-{i:02}"\n' for i in range(1, beds + 1))
    )
    subprocess.run(
        [str(APP), "users", "add", "--config", str(cfg), "--username", USER, "--role", "nurse"],
        input=PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
        env=dict(os.environ, WARDWATCH_FORBID_DEFAULT_DATA_DIR="1"),
    )
    return cfg


def record(drv, seconds):
    drv.execute_script(START, seconds)
    ui, web = processes()
    c0 = {p: cpu_ticks(p) for p in ui + web}
    t0 = time.monotonic()
    result = wait_until("the recording", seconds + 30, lambda: drv.execute_script(RESULT))
    elapsed = time.monotonic() - t0
    cpu = {p: (cpu_ticks(p) - c0[p]) / TICKS / elapsed * 100 for p in c0}
    return result, sum(cpu[p] for p in ui), sum(cpu[p] for p in web)


def summarize(stamps, script):
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    span = (stamps[-1] - stamps[0]) / 1000
    return {
        "frames": len(gaps),
        "fps": len(gaps) / span,
        "p50": percentile(gaps, 0.5),
        "p99": percentile(gaps, 0.99),
        "max": max(gaps),
        "script_p50": percentile(script, 0.5),
        "script_p99": percentile(script, 0.99),
    }


def measure(beds: int, seconds: float, commands: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = config(tmp, beds)
        with virtual_display("1920x1080x24") as display:
            with station_window(APP, display, cfg, tmp / "tauri-driver.log") as drv:
                drv.set_script_timeout(seconds + 60)
                wait_until(
                    "the page", 60,
                    lambda: drv.execute_script("return document.getElementById('station-name').textContent") == f"Frames {beds}",
                )
                wait_until(f"{beds} tiles", 60, lambda: len(drv.find_elements(By.CSS_SELECTOR, '[data-testid^="tile-bed-"]')) == beds)
                sim = None
                if beds > 0:
                    broker = json.loads((tmp / "data" / "runtime.json").read_text())["broker"]
                    sim = subprocess.Popen(
                        [str(SIM), "sim", "--beds", str(beds), "--broker", broker],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                try:
                    if beds > 0:
                        wait_until(
                            "every band live", 60,
                            lambda: drv.execute_script(
                                "return [...document.querySelectorAll('[data-testid^=\"band-\"]')].every(e => e.dataset.state === 'live')"
                            ),
                        )
                    time.sleep(5)  # warm-up: sweeps running, caches warm
                    (stamps, script), ui_cpu, web_cpu = record(drv, seconds)
                    out = summarize(stamps, script)
                    out.update(beds=beds, ui_cpu=ui_cpu, web_cpu=web_cpu)
                    out["size"] = drv.execute_script("return [window.innerWidth, window.innerHeight, window.devicePixelRatio]")
                    if commands:
                        # Frames while a sign-in and a 30 s strip export run; the longest gap
                        # between the first command and the last answer.
                        drv.execute_script(START, 20)
                        t0, t1, t2, path = drv.execute_async_script(COMMANDS, USER, PASSWORD, "bed-01")
                        (stamps, _), = [wait_until("the recording", 60, lambda: drv.execute_script(RESULT))]
                        inside = [b - a for a, b in zip(stamps, stamps[1:]) if b >= t0 and a <= t2]
                        out["during"] = {
                            "longest": max(inside) if inside else float("nan"),
                            "frames": len(inside),
                            "signin_ms": t1 - t0,
                            "export_ms": t2 - t1,
                            "exported": Path(path).exists(),
                        }
                    return out
                finally:
                    if sim is not None:
                        sim.terminate()
                        sim.wait(timeout=10)


def report(results) -> str:
    floor = results[0]
    out = (
        "| beds | frames/s | ratio to floor | frame p50 | p99 | p99 ratio to floor | max | paint script p50 / p99 "
        "| UI process CPU | web process CPU | web CPU per bed |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    for r in results:
        per_bed = (r["web_cpu"] - floor["web_cpu"]) / r["beds"] if r["beds"] else 0
        out += (
            f"| {r['beds'] or 'floor (no beds)'} | {r['fps']:.1f} | {r['fps'] / floor['fps']:.2f} | {r['p50']:.1f} ms "
            f"| {r['p99']:.1f} ms | {r['p99'] / floor['p99']:.2f} | {r['max']:.1f} ms "
            f"| {r['script_p50']:.2f} / {r['script_p99']:.2f} ms | {r['ui_cpu']:.0f} % | {r['web_cpu']:.0f} % "
            f"| {per_bed:.2f} % |\n"
        )
    during = [r for r in results if "during" in r]
    for r in during:
        d = r["during"]
        out += (
            f"\nDuring a sign-in ({d['signin_ms']:.0f} ms, argon2) and a 30 s strip export ({d['export_ms']:.0f} ms, "
            f"file written: {d['exported']}) with {r['beds']} live beds: longest frame {d['longest']:.1f} ms over "
            f"{d['frames']} frames, {d['longest'] / floor['p99']:.2f} × the floor's p99 (goal ≤ 2).\n"
        )
    w, h, dpr = floor["size"]
    out += (
        f"\nThe real window (WebKitGTK) under Xvfb at {w}×{h} (device pixel ratio {dpr}), software rendering, "
        f"on the same 2-core machine as the station and the simulator (its own process); {floor['frames']} frames "
        "or more per run. Goals at 64 beds: frames/s ≥ 0.95 of the floor's, p99 ≤ 1.25 × the floor's p99.\n"
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
    ap.add_argument("--beds", type=int, nargs="*", default=[16, 32, 64])
    a = ap.parse_args()
    results = [measure(0, a.seconds, False)]
    for n in a.beds:
        results.append(measure(n, a.seconds, n == max(a.beds)))
        print(results[-1], flush=True)
    text = report(results)
    print(text)
    if a.out:
        write_section(a.out, "frames", text)
        print(f"written to {a.out}")


if __name__ == "__main__":
    main()
