//! Window attention for HIGH alarms: the window is restored, brought to the front and asks
//! the desktop for critical attention. Sound and OS notifications come from the core and do
//! not depend on this; this only makes sure the nurse sees the screen that explains them.

use tauri::{AppHandle, Manager, UserAttentionType};
use tokio::sync::broadcast::{error::RecvError, Receiver};
use ward_alarm::{LogKind, Priority};
use ward_core::LogEntry;

pub fn spawn(app: AppHandle, mut events: Receiver<LogEntry>) {
    tauri::async_runtime::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => {
                    let high = e.priority == Some(Priority::High);
                    if high && matches!(e.kind, LogKind::Raised | LogKind::Escalated) {
                        attend(&app);
                    }
                }
                // Missed entries under a burst: attend anyway, the burst may hold a HIGH one.
                Err(RecvError::Lagged(_)) => attend(&app),
                Err(RecvError::Closed) => break,
            }
        }
    });
}

fn attend(app: &AppHandle) {
    let Some(w) = app.get_webview_window("main") else {
        return;
    };
    let results = [
        w.unminimize(),
        w.show(),
        w.set_focus(),
        w.request_user_attention(Some(UserAttentionType::Critical)),
    ];
    for r in results {
        if let Err(e) = r {
            tracing::warn!(error = %e, "window attention request failed");
        }
    }
}
