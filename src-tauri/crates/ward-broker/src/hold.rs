//! Acknowledgements held for an in-process subscriber that keeps what it receives.
//!
//! The broker acknowledges a QoS 1/2 PUBLISH once the message is durable in its own store
//! and routed. For the station's ingest that is not enough: ingest hands the message to the
//! station's store writer, which commits in batches, so a crash between the PUBACK and the
//! commit lost acknowledged values (the power-loss drill counted tens per kill). A subscriber
//! made with [`crate::BrokerHandle::subscribe_local_confirmed`] gets each QoS 1/2 message
//! with an [`AckHold`]; the publisher's PUBACK (PUBREC for QoS 2) leaves only once every
//! clone of it is dropped, which the station does after the commit that holds the message.
//!
//! No clock or I/O here: the connection's machine keeps a `Weak` per held acknowledgement
//! and asks whether it is still alive; the last drop wakes the connection's driver.

use std::sync::{Arc, Weak};
use tokio::sync::Notify;

/// Keeps a publisher's acknowledgement back while any clone of it lives.
#[derive(Clone)]
pub struct AckHold(#[allow(dead_code)] Arc<HoldInner>);

pub(crate) struct HoldInner {
    wake: Arc<Notify>,
}

impl Drop for HoldInner {
    fn drop(&mut self) {
        // A permit is stored if the driver is not waiting yet, so no release is missed.
        self.wake.notify_one();
    }
}

impl std::fmt::Debug for AckHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckHold")
    }
}

impl AckHold {
    /// A hold whose last drop wakes `wake`, and the handle that tells whether it still lives.
    pub(crate) fn new(wake: Arc<Notify>) -> (Self, Weak<HoldInner>) {
        let inner = Arc::new(HoldInner { wake });
        let weak = Arc::downgrade(&inner);
        (Self(inner), weak)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acknowledgement_is_free_once_every_clone_is_dropped() {
        let wake = Arc::new(Notify::new());
        let (hold, weak) = AckHold::new(wake);
        let copy = hold.clone();
        drop(hold);
        assert_eq!(weak.strong_count(), 1);
        drop(copy);
        assert_eq!(weak.strong_count(), 0);
    }
}
