//! The station's clocks. Wall-clock milliseconds stamp what people and other systems read
//! (log rows, audit events, messages); the alarm driver's pacing uses `Instant`.

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    ward_store::wall_clock_ms()
}
