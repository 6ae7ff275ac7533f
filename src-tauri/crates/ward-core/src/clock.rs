//! The station's clocks. Wall-clock milliseconds stamp what people and other systems read
//! (log rows, audit events, messages); the alarm engine's timers run on [`mono_ms`], which an
//! NTP step or a person setting the time does not move.

use std::sync::OnceLock;
use std::time::Instant;

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    ward_store::wall_clock_ms()
}

/// Monotonic milliseconds since this process first asked, plus one (`Instant`:
/// CLOCK_MONOTONIC on Linux, QueryPerformanceCounter on Windows). Only differences mean
/// anything; it is never 0, so 0 can stand for "never".
pub fn mono_ms() -> i64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let e = EPOCH.get_or_init(Instant::now);
    i64::try_from(e.elapsed().as_millis()).map_or(i64::MAX, |ms| ms + 1)
}
