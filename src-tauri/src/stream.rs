//! The live stream: one binary frame per tick over a Tauri Channel (layout in
//! ward_core::live). The window appends frames to its trace rings and draws behind a small
//! fixed delay, so tick jitter never shows as stutter.

use crate::commands::IpcError;
use crate::AppState;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::Manager;

/// 30 frames a second: each carries every new sample, so the rate only sets latency.
const TICK: Duration = Duration::from_millis(33);

#[tauri::command]
pub fn live_stream(
    app: tauri::AppHandle,
    state: tauri::State<'_, AppState>,
    channel: Channel<InvokeResponseBody>,
) -> Result<u64, IpcError> {
    let generation = state.stream_generation.fetch_add(1, Ordering::SeqCst) + 1;
    let current = state.stream_generation.clone();
    tauri::async_runtime::spawn(async move {
        let mut cursor = ward_core::FrameCursor::default();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if current.load(Ordering::SeqCst) != generation {
                break;
            }
            let frame = {
                let state = app.state::<AppState>();
                let guard = match state.station.lock() {
                    Ok(g) => g,
                    Err(_) => break,
                };
                match guard.as_ref() {
                    Some(s) => s.frame(&mut cursor),
                    None => break,
                }
            };
            if channel.send(InvokeResponseBody::Raw(frame)).is_err() {
                break;
            }
        }
    });
    Ok(generation)
}
