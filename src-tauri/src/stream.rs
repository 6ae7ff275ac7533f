//! The live stream: one binary frame per tick over a Tauri Channel (layout in
//! ward_core::live). The window appends frames to its trace rings and draws behind a small
//! fixed delay, so tick jitter never shows as stutter.

use crate::commands::IpcError;
use crate::AppState;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tauri::ipc::{Channel, InvokeResponseBody};

/// 30 frames a second: each carries every new sample, so the rate only sets latency.
const TICK: Duration = Duration::from_millis(33);

#[tauri::command]
pub fn live_stream(
    state: tauri::State<'_, AppState>,
    channel: Channel<InvokeResponseBody>,
) -> Result<u64, IpcError> {
    let generation = state.stream_generation.fetch_add(1, Ordering::SeqCst) + 1;
    let current = state.stream_generation.clone();
    // Its own clone of the live view: no lock shared with commands (a sign-in or an export
    // never holds up a frame).
    let live = state.station.live().clone();
    tauri::async_runtime::spawn(async move {
        let mut cursor = ward_core::FrameCursor::default();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if current.load(Ordering::SeqCst) != generation {
                break;
            }
            let frame = live.frame(&mut cursor);
            if channel.send(InvokeResponseBody::Raw(frame)).is_err() {
                break;
            }
        }
    });
    Ok(generation)
}
