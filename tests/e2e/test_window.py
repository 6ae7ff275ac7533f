"""End-to-end: the real Tauri window under Xvfb, driven through WebDriver
(tauri-driver in front of Debian's WebKitWebDriver), with a real MQTT publish from
mosquitto_pub. Run by `make test` (make test-e2e)."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, station_window, virtual_display, wait_until  # noqa: E402

APP = ROOT / "target" / "debug" / "wardwatch-station"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def xvfb():
    with virtual_display() as display:
        yield display


@pytest.fixture
def station_config(tmp_path):
    beds = "".join(
        f'[[beds]]\nid = "bed-0{i}"\nlabel = "Bed {i}"\ndevice = "sim-0{i}"\n' for i in range(1, 5)
    )
    beds += '[[beds]]\nid = "bed-05"\nlabel = "Bed 5"\ndevice = "mon-e2e"\n'
    data = tmp_path / "data"
    cfg = tmp_path / "station.toml"
    cfg.write_text(
        f'[station]\nname = "E2E Station"\ndata_dir = "{data}"\n'
        '[broker]\nlisten = "127.0.0.1:0"\nallow_anonymous = true\n[store]\nbatch_ms = 50\n'
        # The window is closed by WebDriver at the end of each test: no sentinel to outlive it.
        '[sentinel]\nenabled = false\n'
        # Bed 2's patient desaturates: the alarm test acknowledges it in the window.
        '[sim]\nbeds = 4\nscenarios = ["bed 2 desaturates to 76 % at 2 s"]\n' + beds
    )
    # Users as IT creates them, with the installed program's CLI (password, then PIN, on stdin).
    for user, role, secrets in USERS:
        subprocess.run(
            [str(APP), "users", "add", "--config", str(cfg), "--username", user, "--role", role, "--pin"],
            input=secrets,
            text=True,
            check=True,
            env=dict(os.environ, WARDWATCH_FORBID_DEFAULT_DATA_DIR="1"),
        )
    return cfg, data


USERS = [
    ("nurse.e2e", "nurse", "nurse-e2e-pass\n2580\n"),
    ("charge.e2e", "charge_nurse", "charge-e2e-pass\n1357\n"),
    ("viewer.e2e", "viewer", "viewer-e2e-pass\n4680\n"),
]


def click(drv, testid):
    drv.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]').click()


def sign_in(drv, user, password):
    # Sign-in is a dialog; a refused action may already have opened it.
    if not drv.find_element(By.CSS_SELECTOR, '[data-testid="session-dialog"]').get_attribute("open"):
        click(drv, "signin-open")
    wait_until("the sign-in form", 10, lambda: drv.find_element(By.CSS_SELECTOR, '[data-testid="signin-user"]').is_displayed())
    drv.find_element(By.CSS_SELECTOR, '[data-testid="signin-user"]').send_keys(user)
    drv.find_element(By.CSS_SELECTOR, '[data-testid="signin-secret"]').send_keys(password)
    click(drv, "signin-submit")
    wait_until(f"{user} signed in", 10, lambda: "(" in (text_of(drv, "session-text") or "") and "Not signed" not in text_of(drv, "session-text"))


@pytest.fixture
def driver(xvfb, station_config):
    cfg, _ = station_config
    with station_window(APP, xvfb, cfg, cfg.parent / "tauri-driver.log") as drv:
        yield drv


# The text of an element that is on screen (a box inside the viewport, not hidden), or None.
# Read from the page rather than with WebDriver's rendered-text call: WebKitWebDriver answers
# "" for a one-line element that may ellipsise (overflow hidden), though it is on screen.
VISIBLE_TEXT = """
const e = document.querySelector(`[data-testid="${arguments[0]}"]`);
if (e === null) return null;
const r = e.getBoundingClientRect(), s = getComputedStyle(e);
const shown = r.width > 0 && r.height > 0 && r.right > 0 && r.bottom > 0 &&
  r.left < innerWidth && r.top < innerHeight && s.visibility !== "hidden" && e.closest("[hidden]") === null;
return shown ? e.textContent.trim() : "";
"""


def text_of(drv, testid):
    return drv.execute_script(VISIBLE_TEXT, testid)


def test_published_heart_rate_shows_on_its_bed_tile(driver, station_config):
    _, data = station_config
    wait_until("the bed tiles", 60, lambda: text_of(driver, "hr-bed-05") is not None)
    runtime = json.loads((data / "runtime.json").read_text())
    host, port = runtime["broker"].rsplit(":", 1)
    payload = '{"obs":[{"code":147842,"value":77,"unit":264864}]}'
    subprocess.run(
        ["mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-t", "ward/v1/dev/mon-e2e/vitals", "-m", payload],
        check=True,
    )
    wait_until("HR 77 on bed 5", 20, lambda: text_of(driver, "hr-bed-05") == "77")
    assert text_of(driver, "state-bed-05") == "Online"
    # On a tile with room the monitor's id is drawn whole (on narrow tiles it is hidden
    # instead: test_screen.py).
    drawn = driver.execute_script(
        "const d = document.querySelector('[data-testid=\"device-bed-05\"]');"
        " const r = d.getBoundingClientRect(), s = d.parentElement.getBoundingClientRect();"
        " return [d.textContent, r.top < s.bottom && r.right <= s.right + 0.5 && d.scrollWidth <= d.clientWidth];"
    )
    assert drawn == ["mon-e2e", True], drawn
    # The simulated beds stream too: numerics filled, live ECG drawn on the canvas.
    wait_until("simulated numerics", 20, lambda: (text_of(driver, "hr-bed-01") or "--") != "--")
    # Green (ECG) pixels on the tiles' waveform canvases.
    count_trace_pixels = (
        "let n = 0; for (const c of document.querySelectorAll('canvas.wave-canvas')) {"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "for (let i = 1; i < d.length; i += 4) if (d[i] > 100) n++; } return n;"
    )
    wait_until("ECG traces on the canvas", 20, lambda: driver.execute_script(count_trace_pixels) > 500)
    time.sleep(1.5)  # let the sweep cover more of the tile for a readable artifact
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "e2e-window.png"
    assert driver.save_screenshot(str(shot)), "screenshot failed"
    assert shot.stat().st_size > 10_000


def alarm_item(drv, bed, key):
    for e in drv.find_elements(By.CSS_SELECTOR, "#alarm-bar .alarm-item"):
        if e.get_attribute("data-bed") == bed and e.get_attribute("data-key") == key:
            return e
    return None


def test_alarm_shows_in_the_bar_and_is_acknowledged_in_the_window(driver, station_config):
    _, data = station_config
    item = wait_until("the desaturation in the alarm bar", 90, lambda: alarm_item(driver, "bed-02", "limit:spo2_desat"))
    alarm_id = item.get_attribute("data-testid").split("-", 1)[1]
    assert "HIGH" in item.text and "Bed 2" in item.text and "Desaturation" in item.text, item.text
    assert text_of(driver, f"alarm-state-{alarm_id}") == "ACTIVE"
    tile = driver.find_element(By.CSS_SELECTOR, '[data-testid="tile-bed-02"]')
    assert tile.get_attribute("data-alarm") == "high"
    assert "flashing" in tile.get_attribute("class")
    assert "Desaturation" in text_of(driver, "alarm-text-bed-02")

    # Not signed in: the ward and the alarm are on screen, but acting needs a person.
    assert text_of(driver, "session-text") == "Not signed in (view only)"
    click(driver, f"ack-{alarm_id}")
    wait_until("the sign-in notice", 10, lambda: (text_of(driver, "notice") or "") == "Sign in to act on alarms.")

    # A nurse without bed 2 is refused by the core, with the reason.
    sign_in(driver, "nurse.e2e", "nurse-e2e-pass")
    click(driver, f"ack-{alarm_id}")
    wait_until(
        "the not-assigned refusal",
        10,
        lambda: "bed bed-02 is not assigned to you" in (text_of(driver, "notice") or ""),
    )
    click(driver, "signout")

    # The charge nurse assigns bed 2 to the nurse in the bed's panel.
    sign_in(driver, "charge.e2e", "charge-e2e-pass")
    assert text_of(driver, "session-text") == "charge.e2e (charge nurse)"
    driver.find_element(By.CSS_SELECTOR, '[data-testid="tile-bed-02"] .tile-head').click()
    wait_until("the assignment form", 10, lambda: driver.find_elements(By.CSS_SELECTOR, '[data-testid="assign-bed"]'))
    click(driver, "assign-bed")
    wait_until("the assignment notice", 10, lambda: (text_of(driver, "notice") or "") == "Bed 2 assigned to nurse.e2e")
    click(driver, "panel-close")
    # Bed 5's monitor never came ("No data"): the charge nurse discharges it, which ends the
    # bed's alarm.
    wait_until("No data at bed 5", 30, lambda: any(
        e.get_attribute("data-bed") == "bed-05" for e in driver.find_elements(By.CSS_SELECTOR, "#alarm-bar .alarm-item")
    ))
    driver.find_element(By.CSS_SELECTOR, '[data-testid="tile-bed-05"] .tile-head').click()
    wait_until("the discharge button", 10, lambda: driver.find_elements(By.CSS_SELECTOR, '[data-testid="discharge-bed"]'))
    click(driver, "discharge-bed")
    wait_until("the discharge notice", 10, lambda: (text_of(driver, "notice") or "") == "mon-e2e discharged from Bed 5")
    wait_until("bed 5's alarm gone", 10, lambda: not any(
        e.get_attribute("data-bed") == "bed-05" for e in driver.find_elements(By.CSS_SELECTOR, "#alarm-bar .alarm-item")
    ))
    click(driver, "panel-close")
    click(driver, "signout")

    # The nurse locks the station, then acknowledges after a quick PIN unlock.
    sign_in(driver, "nurse.e2e", "nurse-e2e-pass")
    click(driver, "lock")
    wait_until("locked", 10, lambda: text_of(driver, "session-text") == "Locked: nurse.e2e (nurse)")
    click(driver, f"ack-{alarm_id}")
    wait_until("the locked notice", 10, lambda: "locked" in (text_of(driver, "notice") or ""))
    # The refusal opened the unlock dialog with its field focused.
    wait_until("the unlock dialog", 10, lambda: driver.find_element(By.CSS_SELECTOR, '[data-testid="unlock-secret"]').is_displayed())
    driver.find_element(By.CSS_SELECTOR, '[data-testid="unlock-secret"]').send_keys("2580")
    click(driver, "unlock-submit")
    wait_until("unlocked", 10, lambda: text_of(driver, "session-text") == "nurse.e2e (nurse)")
    click(driver, f"ack-{alarm_id}")
    wait_until(
        "the acknowledged state on screen",
        10,
        lambda: text_of(driver, f"alarm-state-{alarm_id}") == "ACKNOWLEDGED by nurse.e2e",
    )
    wait_until("a steady tile", 10, lambda: "flashing" not in tile.get_attribute("class"))

    # In the alarm log: the real SQLite file, and the window's own history view.
    db = data / "wardwatch.sqlite"

    def logged():
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return c.execute(
                "SELECT user FROM alarm_log WHERE alarm_id = ? AND kind = 'acknowledged'", (int(alarm_id),)
            ).fetchone()

    assert wait_until("the acknowledgement in the alarm log", 10, logged) == ("nurse.e2e",)
    driver.find_element(By.CSS_SELECTOR, '[data-testid="unit-history"]').click()

    def history_ack():
        rows = driver.find_elements(By.CSS_SELECTOR, '[data-testid="history-row"][data-kind="acknowledged"]')
        return [r.text for r in rows if "nurse.e2e" in r.text and "Desaturation" in r.text]

    assert wait_until("the acknowledgement in the history panel", 10, history_ack)
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "e2e-alarm.png")), "screenshot failed"

    # From the alarm in the history to full disclosure: the review opens on the 30 s around
    # the alarm's onset, with the stored ECG drawn.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        (onset,) = c.execute(
            "SELECT t_ms FROM alarm_log WHERE alarm_id = ? AND kind = 'raised'", (int(alarm_id),)
        ).fetchone()
    raised = [
        r
        for r in driver.find_elements(By.CSS_SELECTOR, '[data-testid="history-row"][data-kind="raised"]')
        if r.get_attribute("data-t") == str(onset)
    ]
    assert raised, "the onset row in the history"
    raised[0].find_element(By.CSS_SELECTOR, '[data-testid="review-at"]').click()
    review = driver.find_element(By.CSS_SELECTOR, '[data-testid="review"]')
    wait_until("the review view", 10, lambda: review.is_displayed())
    wait_until("the stored ECG around the alarm", 30, lambda: int(review.get_attribute("data-samples") or "0") > 0)
    assert int(review.get_attribute("data-from")) == onset - 15_000
    assert int(review.get_attribute("data-to")) == onset + 15_000
    assert review.get_attribute("data-bed") == "bed-02"
    assert text_of(driver, "review-title") == "Bed 2 — review"
    # The alarm bar stays in sight above the review.
    assert driver.find_element(By.CSS_SELECTOR, '[data-testid="alarm-bar"]').is_displayed()
    # Trends: the SpO2 fall is in the points, and the table view lists rows.
    wait_until("trend points", 10, lambda: int(review.get_attribute("data-trend-points") or "0") > 0)
    click(driver, "trend-table-toggle")
    wait_until("the trend table", 10, lambda: driver.find_elements(By.CSS_SELECTOR, '[data-testid="trend-row"]'))
    # The signed-in nurse exports the strip; the file is a PNG in the station's exports.
    click(driver, "export-strip-png")
    exported = wait_until("the exported strip", 20, lambda: review.get_attribute("data-exported"))
    assert Path(exported).parent == data / "exports", exported
    assert Path(exported).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert driver.save_screenshot(str(ARTIFACTS / "e2e-review.png")), "screenshot failed"
    click(driver, "review-close")
    wait_until("back to live", 10, lambda: not review.is_displayed())


def station_toml(path, data, station_id, name, prefix, port, peers, follow=(), scenarios=()):
    beds = "".join(
        f'[[beds]]\nid = "{prefix}-0{i}"\nlabel = "{name} bed {i}"\ndevice = "sim-0{i}"\n' for i in (1, 2)
    )
    quoted = lambda xs: "[" + ", ".join(f'"{x}"' for x in xs) + "]"  # noqa: E731
    path.write_text(
        f'[station]\nid = "{station_id}"\nname = "{name}"\ndata_dir = "{data}"\n'
        '[broker]\nlisten = "127.0.0.1:0"\nallow_anonymous = true\n[store]\nbatch_ms = 50\n'
        "[alarms]\nnotifications = false\n[sentinel]\nenabled = false\n"
        f'[upstream]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\npeer_stations = {quoted(peers)}\n'
        f"[care_group]\nfollow = {quoted(follow)}\n"
        f"[sim]\nbeds = 2\nscenarios = {quoted(scenarios)}\n" + beds
    )


def test_a_followed_stations_alarm_shows_in_other_beds_and_is_acknowledged_here(xvfb, tmp_path):
    """Care group in the real window: station 4 West (a headless process) desaturates; this
    window's station, 5 East, follows it through a real Mosquitto; its alarm shows in the
    "Other beds" bar with station and bed, a nurse acknowledges it here, and 4 West applies
    it (its trail says who and where)."""
    from harness import free_port

    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    core = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a_dir = tmp_path / "a"
    a_dir.mkdir()
    a_cfg = a_dir / "station.toml"
    station_toml(a_cfg, a_dir / "data", "st-4w", "4 West", "4w", port, ["st-5e"],
                 scenarios=["bed 2 desaturates to 76 % at 2 s"])
    env = dict(os.environ, WARDWATCH_FORBID_DEFAULT_DATA_DIR="1")
    a = subprocess.Popen(
        [str(APP), "run", "--no-sentinel", "--summary-every", "0", "--config", str(a_cfg)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    b_cfg = tmp_path / "station.toml"
    station_toml(b_cfg, tmp_path / "data", "st-5e", "5 East", "5e", port, ["st-4w"], follow=["st-4w"])
    subprocess.run(
        [str(APP), "users", "add", "--config", str(b_cfg), "--username", "nurse.e2e", "--role", "nurse", "--pin"],
        input="nurse-e2e-pass\n2580\n", text=True, check=True, env=env,
    )
    key = "limit:spo2_desat"
    item = f"other-st-4w-4w-02-{key}"
    try:
        with station_window(APP, xvfb, b_cfg, tmp_path / "tauri-driver.log") as drv:
            wait_until("4 West's desaturation in Other beds", 90, lambda: "Desaturation" in (text_of(drv, item) or ""))
            text = text_of(drv, item)
            assert "HIGH" in text and "4 West · 4 West bed 2" in text and "sounding there" in text, text
            # A first start (users were created with the CLI before it) is no restart.
            assert text_of(drv, "restart") == "", text_of(drv, "restart")
            # Not this station's alarm: its own bar does not have it.
            assert alarm_item(drv, "4w-02", key) is None
            ARTIFACTS.mkdir(exist_ok=True)
            assert drv.save_screenshot(str(ARTIFACTS / "e2e-other-beds.png"))
            sign_in(drv, "nurse.e2e", "nurse-e2e-pass")
            click(drv, f"other-ack-st-4w-4w-02-{key}")
            wait_until(
                "acknowledged at 4 West, shown here",
                30,
                lambda: "acknowledged by nurse.e2e at station st-5e" in (text_of(drv, item) or ""),
            )
    finally:
        a.terminate()
        a.wait(timeout=20)
        core.terminate()
        core.wait(timeout=10)
    db = sqlite3.connect(a_dir / "data" / "wardwatch.sqlite")
    rows = db.execute("SELECT actor FROM audit WHERE kind = 'alarm.acknowledged'").fetchall()
    assert ("nurse.e2e at station st-5e",) in rows, rows


def test_the_adt_feed_and_the_charge_nurse_put_patients_on_the_tiles(xvfb, station_config):
    """Patients in the real window: the hospital's ADT feed (PyPI's hl7 package over MLLP)
    admits Jane Doe to bed 3; the charge nurse admits a child to bed 4 in the bed panel; both
    tiles carry the patient line, the other beds say no patient is admitted."""
    cfg, data = station_config
    with cfg.open("a") as f:
        f.write('[hl7]\nadt_listen = "127.0.0.1:0"\npoint_of_care = "4W"\n')
    with station_window(APP, xvfb, cfg, cfg.parent / "tauri-driver.log") as drv:
        runtime = data / "runtime.json"
        wait_until("the ADT listener", 60, lambda: runtime.exists() and "hl7_adt" in json.loads(runtime.read_text()))
        host, port = json.loads(runtime.read_text())["hl7_adt"].rsplit(":", 1)
        a01 = (
            "MSH|^~\\&|EPIC|CITYHOSP|WARDWATCH|4W|20261204101500||ADT^A01^ADT_A01|E2E-1|P|2.5\n"
            "EVN|A01|20261204101500\n"
            "PID|1||123456^^^CITYHOSP^MR||DOE^JANE||19840229|F\n"
            "PV1|1|I|4W^301^bed-03\n"
        )
        sent = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "py" / "hl7_send.py"), host, port],
            input=a01, text=True, capture_output=True, check=True,
        )
        assert json.loads(sent.stdout.splitlines()[0])["code"] == "AA", sent.stdout
        wait_until(
            "Jane Doe on bed 3's tile", 20,
            lambda: text_of(drv, "patient-bed-03") == "DOE, JANE · MRN 123456 · F · 1984-02-29 · adult",
        )
        assert text_of(drv, "patient-bed-01") == "no patient admitted"

        # The charge nurse admits a child to bed 4 in the bed panel.
        sign_in(drv, "charge.e2e", "charge-e2e-pass")
        drv.find_element(By.CSS_SELECTOR, '[data-testid="tile-bed-04"] .tile-head').click()
        wait_until("the patient form", 10, lambda: drv.find_elements(By.CSS_SELECTOR, '[data-testid="patient-admit"]'))
        assert text_of(drv, "panel-patient") == "no patient admitted"
        for field, value in [("mrn", "P-42"), ("authority", "CITYHOSP"), ("family", "Lee"), ("given", "Sam"), ("birth_date", "2016-03-09")]:
            drv.find_element(By.CSS_SELECTOR, f'[data-testid="patient-{field}"]').send_keys(value)
        for field, value in [("sex", "M"), ("category", "pediatric")]:
            drv.execute_script(
                "const s = document.querySelector(`[data-testid=\"patient-${arguments[0]}\"]`); s.value = arguments[1];",
                field, value,
            )
        click(drv, "patient-admit")
        wait_until("the admission notice", 10, lambda: (text_of(drv, "notice") or "") == "Lee admitted to Bed 4")
        click(drv, "panel-close")
        wait_until(
            "the child on bed 4's tile", 10,
            lambda: text_of(drv, "patient-bed-04") == "LEE, Sam · MRN P-42 · M · 2016-03-09 · pediatric",
        )
        ARTIFACTS.mkdir(exist_ok=True)
        assert drv.save_screenshot(str(ARTIFACTS / "e2e-patients.png"))
        # Review names the patient of the window on screen, and exports it as FHIR and EDF+.
        drv.find_element(By.CSS_SELECTOR, '[data-testid="tile-bed-03"] .tile-head').click()
        wait_until("the review button", 10, lambda: drv.find_elements(By.CSS_SELECTOR, '[data-testid="review-open"]'))
        click(drv, "review-open")
        wait_until(
            "the patient in review", 20,
            lambda: (text_of(drv, "review-patient") or "").endswith("DOE, JANE · MRN 123456 · F · 1984-02-29 · adult from " + time.strftime("%H:%M"))
            or text_of(drv, "review-patient") == "DOE, JANE · MRN 123456 · F · 1984-02-29 · adult",
        )
        for button, ext in [("export-fhir", ".json"), ("export-edf", ".edf")]:
            click(drv, button)
            wait_until(f"the {ext} export", 20, lambda: (text_of(drv, "notice") or "").endswith(ext))
    db = sqlite3.connect(data / "wardwatch.sqlite")
    trail = db.execute("SELECT kind, actor, bed FROM audit WHERE kind LIKE 'patient.%' ORDER BY seq").fetchall()
    assert trail == [("patient.admitted", "adt:EPIC", "bed-03"), ("patient.admitted", "charge.e2e", "bed-04")], trail
    limits = db.execute("SELECT user FROM alarm_log WHERE bed = 'bed-04' AND kind = 'limits_changed'").fetchall()
    assert ("charge.e2e",) in limits, limits


def test_unit_statistics_for_the_charge_nurse_and_what_a_nurse_and_a_viewer_see(xvfb, station_config):
    """Unit statistics in the real window: a viewer is refused, a nurse sees the figures and
    the limit review without Apply, the charge nurse applies a suggestion (the audited
    limit change)."""
    cfg, data = station_config
    text = cfg.read_text().replace(
        'scenarios = ["bed 2 desaturates to 76 % at 2 s"]',
        'scenarios = ["bed 2 desaturates to 76 % at 2 s", "bed 1 spo2 wavers around 87 % at 0 s"]',
    )
    cfg.write_text(text)
    db_path = data / "wardwatch.sqlite"

    def raised(bed, cond):
        if not db_path.exists():
            return 0
        with sqlite3.connect(db_path) as db:
            return db.execute(
                "SELECT COUNT(*) FROM alarm_log WHERE bed = ? AND condition = ? AND kind = 'raised'", (bed, cond)
            ).fetchone()[0]

    with station_window(APP, xvfb, cfg, cfg.parent / "tauri-driver.log") as drv:
        wait_until("an SpO2 alarm at bed 1", 90, lambda: raised("bed-01", "limit:spo2_low") >= 1)
        sign_in(drv, "viewer.e2e", "viewer-e2e-pass")
        click(drv, "unit-stats")
        wait_until("the viewer's refusal", 20, lambda: "view-only" in (text_of(drv, "stats-refusal") or ""))
        click(drv, "stats-close")
        click(drv, "signout")

        sign_in(drv, "nurse.e2e", "nurse-e2e-pass")
        click(drv, "unit-stats")
        wait_until("the report for the nurse", 30, lambda: drv.find_elements(By.CSS_SELECTOR, '[data-testid="review-bed-01-spo2_low"]'))
        beds = drv.find_element(By.CSS_SELECTOR, '[data-testid="stats-beds"]').text
        assert "bed-01" in beds and "bed-04" in beds, beds
        assert not drv.find_elements(By.CSS_SELECTOR, '[data-testid^="apply-"]'), "a nurse cannot change limits"
        assert "Limits are changed by a charge nurse" in drv.find_element(By.CSS_SELECTOR, '[data-testid="stats-reviews"]').text
        click(drv, "stats-close")
        click(drv, "signout")

        sign_in(drv, "charge.e2e", "charge-e2e-pass")
        click(drv, "unit-stats")
        wait_until("the Apply buttons", 30, lambda: drv.find_elements(By.CSS_SELECTOR, '[data-testid^="apply-bed-01-spo2_low-"]'))
        # The report page (an SVG image) has loaded and is drawn.
        wait_until("the report image", 20, lambda: drv.execute_script(
            "const i = document.querySelector('[data-testid=\"stats-report\"]'); return i !== null && i.complete && i.naturalWidth > 0;"))
        title = text_of(drv, "stats-title")
        assert title == "Unit statistics — last 24 hours", title
        ARTIFACTS.mkdir(exist_ok=True)
        assert drv.save_screenshot(str(ARTIFACTS / "e2e-unit-statistics.png"))
        # The review's rows against the log: the unchanged rule replays the live count.
        review = drv.find_element(By.CSS_SELECTOR, '[data-testid="stats-reviews"]').text
        assert "SpO2 low < 90 for 10 s" in review, review
        # Only changes that would have alarmed less are offered; apply the first one.
        apply = drv.find_elements(By.CSS_SELECTOR, '[data-testid^="apply-bed-01-spo2_low-"]')[0]
        change = apply.find_element(By.XPATH, "../../td[1]").text
        apply.click()
        wait_until("the applied notice", 20, lambda: (text_of(drv, "notice") or "") == f"bed-01: SpO2 low {change} applied")
    with sqlite3.connect(db_path) as db:
        changed = db.execute(
            "SELECT user, detail FROM alarm_log WHERE bed = 'bed-01' AND kind = 'limits_changed' ORDER BY id DESC"
        ).fetchone()
    assert changed is not None and changed[0] == "charge.e2e" and "spo2_low<" in changed[1], changed
