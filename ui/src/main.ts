// The station window. main.ts only wires the views to the one state object (state.ts), the
// twice-a-second snapshot (numerics, alarms, session) and the binary live stream (samples,
// one frame per station tick over a Tauri Channel). Views live in views/, pure decisions in
// the modules beside this file (each with its test).

import { decodeFrame } from "./frame";
import { ipc } from "./ipc";
import { state } from "./state";
import { initAlarmBar, renderAlarmBar } from "./views/alarmbar";
import { WardGrid } from "./views/grid";
import { initHeader, renderHeader } from "./views/header";
import { banner } from "./views/notice";
import { renderOtherBar } from "./views/otherbar";
import { initPanel, openBed } from "./views/panel";
import { initReview, placeReview, resizeReview } from "./views/review";
import { initStats } from "./views/stats";
import { initSession, renderAccount } from "./views/session";

const grid = new WardGrid((bed, label) => void openBed(bed, label));

async function refresh(): Promise<void> {
  try {
    const snap = await ipc.snapshot();
    state.snapshot = snap;
    state.alarms = snap.alarms;
    state.labels = new Map(snap.beds.map((b) => [b.id, b.label]));
    renderHeader(snap);
    renderAlarmBar(snap.alarms, snap.now_ms);
    renderOtherBar(snap.alarms.others);
    grid.update(snap.beds, snap.alarms.alarms, snap.now_ms);
    renderAccount(snap.session);
    if (state.review !== null) placeReview();
    banner(snap.alarms.driver_ok ? null : "ALARM SYSTEM NOT RUNNING: the station's alarm driver has stopped. Call IT.");
  } catch (e) {
    banner(`Station core not reachable: ${String(e)}`);
  }
}

function startStream(): void {
  ipc
    .liveStream((buf) => {
      try {
        const frame = decodeFrame(buf);
        const now = performance.now();
        for (const tr of frame.traces) grid.push(tr.bed, tr.kind, tr.samples, tr.rateHz, now);
      } catch (e) {
        console.error("bad live frame", e);
      }
    })
    .catch((e: unknown) => banner(`Live stream failed: ${String(e)}`));
}

/** Read-only figures for the frame benchmark (tests/e2e/bench_frames.py): script time of
 *  the last paint, so a slow frame can be told apart from slow compositing. */
const stats = { scriptMs: 0 };
(window as unknown as { wardwatchFrameStats: typeof stats }).wardwatchFrameStats = stats;

function paint(now: number): void {
  grid.paint(now);
  stats.scriptMs = grid.scriptMs;
  requestAnimationFrame(paint);
}

state.refresh = refresh;
initSession();
initHeader(() => void openBed(null, "Unit"));
initAlarmBar(() => void openBed(null, "Unit"));
initPanel();
initReview();
initStats();
window.addEventListener("resize", resizeReview);
void refresh().then(() => {
  startStream();
  requestAnimationFrame(paint);
  setInterval(() => void refresh(), 500);
});
