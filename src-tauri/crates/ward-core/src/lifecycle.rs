//! One lifecycle for every subsystem: a root cancellation token, and an ordered list of
//! parts, each with its stop and join. Shutdown walks the list in [`Stage`] order, awaiting
//! each part's completion before the next; nothing polls a counter.
//!
//! The order is the one the data flows in, so nothing a part has accepted is lost:
//! the simulator (its monitors disconnect after sending everything), the broker (stops
//! accepting, connections end after routing what they read), ingest (drains what the broker
//! handed over), the alarm driver (judges all of it; its last log rows queued), sync (its
//! last watermark queued), and last the store writer (writes everything queued).

use std::future::Future;
use std::pin::Pin;
use tokio_util::sync::CancellationToken;

/// When a part stops, earliest first (docs/ARCHITECTURE.md, "Shutdown order").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    #[cfg(feature = "sim")]
    Simulator,
    Broker,
    Ingest,
    AlarmDriver,
    Sync,
    Writer,
}

type Stop = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

pub(crate) struct Lifecycle {
    root: CancellationToken,
    parts: Vec<(Stage, Stop)>,
}

impl Lifecycle {
    pub fn new() -> Self {
        Self {
            root: CancellationToken::new(),
            parts: Vec::new(),
        }
    }

    /// A token for one part: cancelled at that part's turn, or with the root (which ends
    /// the shutdown, so nothing is left running whatever a stop did).
    pub fn token(&self) -> CancellationToken {
        self.root.child_token()
    }

    /// Registers a part's stop: a function that asks it to stop and completes when it has.
    pub fn add<F>(&mut self, stage: Stage, stop: impl FnOnce() -> F + Send + 'static)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.parts
            .push((stage, Box::new(move || Box::pin(stop()) as Pin<Box<_>>)));
    }

    /// A part whose stop is cancelling its token and awaiting its task.
    pub fn add_task(
        &mut self,
        stage: Stage,
        token: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    ) {
        self.add(stage, move || async move {
            token.cancel();
            if let Err(e) = task.await {
                tracing::error!(?stage, error = %e, "station part failed");
            }
        });
    }

    /// Stops every part in stage order (parts of one stage in the order they were added).
    pub async fn shutdown(mut self) {
        self.parts.sort_by_key(|(stage, _)| *stage);
        for (stage, stop) in self.parts {
            tracing::debug!(?stage, "stopping");
            stop().await;
        }
        self.root.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn parts_stop_in_stage_order_each_after_the_one_before_completed() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lc = Lifecycle::new();
        for stage in [Stage::Writer, Stage::Ingest, Stage::Broker, Stage::Sync] {
            let log = log.clone();
            lc.add(stage, move || async move {
                log.lock().unwrap().push(format!("{stage:?} asked"));
                tokio::task::yield_now().await;
                log.lock().unwrap().push(format!("{stage:?} done"));
            });
        }
        let token = lc.token();
        let task = tokio::spawn({
            let token = token.clone();
            let log = log.clone();
            async move {
                token.cancelled().await;
                log.lock().unwrap().push("driver cancelled".into());
            }
        });
        lc.add_task(Stage::AlarmDriver, token, task);
        lc.shutdown().await;
        assert_eq!(
            log.lock().unwrap().join(", "),
            "Broker asked, Broker done, Ingest asked, Ingest done, driver cancelled, \
             Sync asked, Sync done, Writer asked, Writer done"
        );
    }
}
