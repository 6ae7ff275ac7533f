"""End-to-end: the central screen a nurse watches. The real window under Xvfb at the sizes
the issue names, with simulated beds streaming: every tile in view without scrolling, the
three waveform bands of every tile drawn in their colours (checked in the screenshot's
pixels), and a channel that stops shown as a dashed "no signal" band while the bed's other
channels keep sweeping. Screenshots are kept in test-artifacts/."""

import sys
import time
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, station_window, virtual_display, wait_until  # noqa: E402

from selenium.webdriver.common.by import By  # noqa: E402

APP = ROOT / "target" / "debug" / "wardwatch-station"
ARTIFACTS = ROOT / "test-artifacts"
BANDS = ("ecg", "pleth", "resp")


def colour_matches(band, px):
    """Trace colour of `band` (ECG green, pleth cyan, resp yellow), anti-aliasing allowed."""
    r, g, b = px[:3]
    if band == "ecg":
        return g > 150 and r < 140 and g > b + 40
    if band == "pleth":
        return b > 170 and g > 120 and r < 140 and b > r + 60
    return r > 170 and g > 140 and b < 140


def band_boxes(drv):
    """Every band's box in CSS px (the window's device pixel ratio is 1 under Xvfb)."""
    return drv.execute_script(
        """
        const out = {};
        for (const e of document.querySelectorAll('[data-testid^="band-"]')) {
          const r = e.getBoundingClientRect();
          out[e.dataset.testid] = [r.left, r.top, r.right, r.bottom, e.dataset.state || ''];
        }
        return out;
        """
    )


def trace_pixels(img, box, band):
    """Pixels of the band's colour in its right 70 % (the left holds the band's label)."""
    left, top, right, bottom = (int(v) for v in box[:4])
    left += int((right - left) * 0.3)
    px = img.load()
    return sum(
        1
        for x in range(left, right)
        for y in range(top + 1, bottom - 1)
        if colour_matches(band, px[x, y])
    )


def ward_config(tmp, beds, scenarios=()):
    cfg = tmp / "station.toml"
    cfg.write_text(
        f'[station]\nname = "Screen {beds}"\ndata_dir = "{tmp / "data"}"\n'
        f'[broker]\nlisten = "127.0.0.1:0"\n[alarms]\nnotifications = false\n[sentinel]\nenabled = false\n'
        f"[sim]\nbeds = {beds}\nscenarios = [{', '.join(repr(s).replace(chr(39), chr(34)) for s in scenarios)}]\n"
        + "".join(f'[[beds]]\nid = "bed-{i:02}"\nlabel = "Bed {i}"\ndevice = "sim-{i:02}"\n' for i in range(1, beds + 1))
    )
    return cfg


def assert_all_tiles_in_view(drv, beds, width, height):
    # The window opened maximized on its own (no WebDriver resize): it fills the screen.
    assert drv.execute_script("return [window.innerWidth, window.innerHeight]") == [width, height]
    rects = drv.execute_script(
        "return [...document.querySelectorAll('[data-testid^=\"tile-bed-\"]')]"
        ".map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })"
    )
    assert len(rects) == beds
    for left, top, right, bottom in rects:
        assert left >= 0 and top >= 0 and right <= width and bottom <= height, (left, top, right, bottom)
    # Nothing scrolls: neither the page nor the ward.
    assert drv.execute_script(
        "const w = document.getElementById('ward'), d = document.scrollingElement;"
        "return w.scrollHeight <= w.clientHeight && d.scrollHeight <= d.clientHeight"
        " && w.scrollWidth <= w.clientWidth && d.scrollWidth <= d.clientWidth"
    )


def assert_device_ids_whole_or_hidden(drv, beds):
    # A tile's device id is drawn whole or not at all: never cut to a letter or two.
    shown = drv.execute_script(
        "return [...document.querySelectorAll('[data-testid^=\"device-bed-\"]')].map(d => {"
        " const r = d.getBoundingClientRect(), s = d.parentElement.getBoundingClientRect();"
        " const head = d.closest('.tile-head').getBoundingClientRect();"
        " const onFirstLine = r.top < s.bottom;"
        " const whole = d.scrollWidth <= d.clientWidth && r.left >= s.left - 0.5 && r.right <= s.right + 0.5 && r.right <= head.right + 0.5;"
        " return [d.dataset.testid, d.textContent, onFirstLine, whole]; })"
    )
    assert len(shown) == beds
    cut = [(tid, text) for tid, text, visible, whole in shown if visible and not whole]
    assert not cut, f"device ids drawn cut: {cut}"


def screenshot(drv, name):
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert drv.save_screenshot(str(path)), "screenshot failed"
    return Image.open(path).convert("RGB")


def test_sixteen_beds_fit_a_1280x1024_screen(tmp_path):
    cfg = ward_config(tmp_path, 16)
    with virtual_display("1280x1024x24") as display:
        with station_window(APP, display, cfg, tmp_path / "tauri-driver.log") as drv:
            wait_until("16 tiles", 60, lambda: len(drv.find_elements(By.CSS_SELECTOR, '[data-testid^="tile-bed-"]')) == 16)
            assert_all_tiles_in_view(drv, 16, 1280, 1024)
            wait_until("every band live", 60, lambda: all(b[4] == "live" for b in band_boxes(drv).values()))
            time.sleep(4.5)  # one full 4 s sweep drawn across every band
            img = screenshot(drv, "screen-16-beds-1280x1024.png")
            assert_device_ids_whole_or_hidden(drv, 16)
            boxes = band_boxes(drv)
            for i in range(1, 17):
                for band in BANDS:
                    n = trace_pixels(img, boxes[f"band-bed-{i:02}-{band}"], band)
                    assert n > 20, f"bed {i} {band}: {n} trace pixels"


def test_sixty_four_beds_all_in_view_with_three_live_waveforms_each(tmp_path):
    # Bed 4's pleth stops 40 s into the simulation: late enough that the window is up and
    # every band has been seen live first.
    cfg = ward_config(tmp_path, 64, ["bed 4 pleth stops at 40 s"])
    with virtual_display("1920x1080x24") as display:
        with station_window(APP, display, cfg, tmp_path / "tauri-driver.log") as drv:
            wait_until("64 tiles", 60, lambda: len(drv.find_elements(By.CSS_SELECTOR, '[data-testid^="tile-bed-"]')) == 64)
            assert_all_tiles_in_view(drv, 64, 1920, 1080)
            # HR and SpO2 at their minimum legible size or larger.
            big = drv.execute_script(
                "return parseFloat(getComputedStyle(document.querySelector('[data-testid=\"hr-bed-01\"]')).fontSize)"
            )
            assert big >= 28, big

            wait_until("every band live", 60, lambda: all(b[4] == "live" for b in band_boxes(drv).values()))
            time.sleep(4.5)  # one full 4 s sweep drawn across every band
            img = screenshot(drv, "screen-64-beds-1920x1080.png")
            boxes = band_boxes(drv)
            missing = []
            for i in range(1, 65):
                for band in BANDS:
                    key = f"band-bed-{i:02}-{band}"
                    if boxes[key][4] == "live" and trace_pixels(img, boxes[key], band) <= 10:
                        missing.append(key)
            assert not missing, f"bands without their trace colour: {missing}"

            # Bed 4's pleth stops: its band goes to the dashed "no signal" state, its ECG and
            # resp stay live.
            pleth = '[data-testid="band-bed-04-pleth"]'
            wait_until(
                "bed 4's pleth flat with its reason",
                90,
                lambda: drv.find_element(By.CSS_SELECTOR, pleth).get_attribute("data-state") == "no signal",
            )
            boxes = band_boxes(drv)
            assert boxes["band-bed-04-ecg"][4] == "live"
            assert boxes["band-bed-04-resp"][4] == "live"
            first = screenshot(drv, "screen-64-beds-pleth-stopped.png")
            time.sleep(1)
            second = screenshot(drv, "screen-64-beds-pleth-stopped-later.png")
            # The flat band: a dashed line across its middle row (runs of colour with gaps),
            # the same in both shots; the ECG band above it changed between them (sweeping).
            left, top, right, bottom = (int(v) for v in boxes["band-bed-04-pleth"][:4])
            mid = top + (bottom - top) // 2
            rows = [y for y in range(mid - 2, mid + 3)]
            line = max(rows, key=lambda y: sum(colour_matches("pleth", first.getpixel((x, y))) for x in range(left, right)))
            on = [colour_matches("pleth", first.getpixel((x, line))) for x in range(left + (right - left) // 2, right)]
            assert sum(on) > len(on) // 4, "the dashed line is drawn"
            assert sum(1 for a, b in zip(on, on[1:]) if a and not b) >= 3, "the line is dashed, not solid"
            assert [first.getpixel((x, line)) for x in range(left, right)] == [
                second.getpixel((x, line)) for x in range(left, right)
            ]
            e = boxes["band-bed-04-ecg"]
            ecg_box = tuple(int(v) for v in e[:4])
            assert first.crop(ecg_box).tobytes() != second.crop(ecg_box).tobytes(), "bed 4's ECG kept sweeping"
