//! Session state: what outlives one connection of a client.
//!
//! A session holds the client's subscriptions, its queue of messages not yet sent, the QoS 1/2
//! messages sent but not acknowledged (resent with DUP on reconnect), and the packet ids of
//! inbound QoS 2 messages received but not released. While the client is connected, its
//! connection task drains the queue as the client's receive maximum allows; while it is away
//! (a persistent session), QoS 1/2 messages wait in the queue, bounded by count and bytes.

use crate::codec::{Qos, SubOpts};
use crate::Message;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio::time::Instant;

/// One message on its way to one session.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub msg: Arc<Message>,
    pub qos: Qos,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    /// A delivery row for it is on disk (to delete when it completes).
    pub durable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// What an outbound QoS 1/2 message in flight waits for.
pub(crate) enum Flight {
    /// QoS 1 PUBLISH sent, PUBACK awaited.
    Ack,
    /// QoS 2 PUBLISH sent, PUBREC awaited.
    Rec,
    /// PUBREL sent, PUBCOMP awaited.
    Comp,
}

#[derive(Debug)]
pub(crate) struct OutFlight {
    pub pkid: u16,
    pub d: Delivery,
    pub state: Flight,
}

/// The connection currently attached to a session.
pub(crate) struct Link {
    pub owner: u64,
    pub wake: Arc<Notify>,
    pub kill: Arc<Notify>,
}

pub(crate) struct Session {
    /// Seconds the session outlives its connection; 0 ends it with the connection,
    /// `u32::MAX` never.
    pub expiry: u32,
    pub subs: HashMap<String, SubOpts>,
    pub queue: VecDeque<Delivery>,
    pub queued_bytes: usize,
    pub inflight: VecDeque<OutFlight>,
    pkids: HashSet<u16>,
    next_pkid: u16,
    pub inbound_qos2: HashSet<u16>,
    pub link: Option<Link>,
    pub offline_since: Option<Instant>,
    /// Bumped on every connect; a delayed will checks it to see whether the client came back.
    pub generation: u64,
    /// Set when the session has ended (expired, or replaced by a clean start).
    pub removed: bool,
}

pub(crate) struct SessionSlot {
    pub client_id: Arc<str>,
    online: AtomicBool,
    persistent: AtomicBool,
    state: Mutex<Session>,
}

/// Why a delivery was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The client is away and the session keeps nothing (QoS 0 or a clean session).
    NotKept,
    QueueFull,
    Ended,
}

impl SessionSlot {
    pub fn new(client_id: Arc<str>, expiry: u32) -> Self {
        Self {
            client_id,
            online: AtomicBool::new(false),
            persistent: AtomicBool::new(expiry > 0),
            state: Mutex::new(Session {
                expiry,
                subs: HashMap::new(),
                queue: VecDeque::new(),
                queued_bytes: 0,
                inflight: VecDeque::new(),
                pkids: HashSet::new(),
                next_pkid: 0,
                inbound_qos2: HashSet::new(),
                link: None,
                offline_since: Some(Instant::now()),
                generation: 0,
                removed: false,
            }),
        }
    }

    /// The session's state. A poisoned lock (a panic while it was held, which the broker's
    /// code does not do) is recovered rather than spreading the failure to every publisher.
    pub fn lock(&self) -> MutexGuard<'_, Session> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    pub fn is_persistent(&self) -> bool {
        self.persistent.load(Ordering::Relaxed)
    }

    /// Updates the lock-free copies of `link.is_some()` and `expiry > 0`.
    pub fn sync_flags(&self, s: &Session) {
        self.online.store(s.link.is_some(), Ordering::Relaxed);
        self.persistent.store(s.expiry > 0, Ordering::Relaxed);
    }
}

impl Session {
    /// Queues a delivery, waking the connection if there is one.
    pub fn offer(&mut self, d: Delivery, max_msgs: usize, max_bytes: usize) -> Result<(), Refused> {
        if self.removed {
            return Err(Refused::Ended);
        }
        if self.link.is_none() && (d.qos == 0 || self.expiry == 0) {
            return Err(Refused::NotKept);
        }
        let len = d.msg.payload.len();
        if self.queue.len() >= max_msgs || self.queued_bytes + len > max_bytes {
            return Err(Refused::QueueFull);
        }
        self.queued_bytes += len;
        self.queue.push_back(d);
        if let Some(l) = &self.link {
            l.wake.notify_one();
        }
        Ok(())
    }

    pub fn pop(&mut self) -> Option<Delivery> {
        let d = self.queue.pop_front()?;
        self.queued_bytes = self.queued_bytes.saturating_sub(d.msg.payload.len());
        Some(d)
    }

    /// A packet id not in use by another message in flight (taken by `push_flight`).
    pub fn alloc_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.pkids.contains(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    pub fn push_flight(&mut self, pkid: u16, d: Delivery) {
        let state = if d.qos == 1 { Flight::Ack } else { Flight::Rec };
        self.pkids.insert(pkid);
        self.inflight.push_back(OutFlight { pkid, d, state });
    }

    fn find(&self, pkid: u16, state: Flight) -> Option<usize> {
        // Acknowledgements mostly arrive in order, so the front is checked first.
        self.inflight
            .iter()
            .position(|f| f.pkid == pkid && f.state == state)
    }

    /// PUBACK or PUBCOMP: the flow is over; returns the delivery.
    pub fn complete(&mut self, pkid: u16, state: Flight) -> Option<Delivery> {
        let i = self.find(pkid, state)?;
        let f = self.inflight.remove(i)?;
        self.pkids.remove(&pkid);
        Some(f.d)
    }

    /// PUBREC: the message is delivered; PUBREL follows. Returns the delivery if known.
    pub fn released(&mut self, pkid: u16) -> Option<&Delivery> {
        let i = self.find(pkid, Flight::Rec)?;
        let f = self.inflight.get_mut(i)?;
        f.state = Flight::Comp;
        Some(&f.d)
    }

    /// Everything still owed to the client, for when the session ends.
    pub fn drain_all(&mut self) -> Vec<Delivery> {
        self.pkids.clear();
        self.queued_bytes = 0;
        let mut out: Vec<Delivery> = self.inflight.drain(..).map(|f| f.d).collect();
        out.extend(self.queue.drain(..));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn d(qos: Qos, n: usize) -> Delivery {
        Delivery {
            msg: Arc::new(Message {
                topic: Arc::from("t"),
                payload: Bytes::from(vec![0u8; n]),
                qos,
                retain: false,
                client_id: Arc::from("p"),
                props: None,
                expires_at_ms: None,
                id: 0,
            }),
            qos,
            retain: false,
            sub_ids: Vec::new(),
            durable: false,
        }
    }

    #[test]
    fn offline_sessions_keep_only_qos1_and_2_and_only_when_persistent() {
        let slot = SessionSlot::new(Arc::from("c"), 60);
        let mut s = slot.lock();
        assert_eq!(s.offer(d(0, 1), 10, 100), Err(Refused::NotKept));
        assert_eq!(s.offer(d(1, 1), 10, 100), Ok(()));
        s.expiry = 0;
        assert_eq!(s.offer(d(2, 1), 10, 100), Err(Refused::NotKept));
    }

    #[test]
    fn queue_limits_by_count_and_bytes() {
        let slot = SessionSlot::new(Arc::from("c"), 60);
        let mut s = slot.lock();
        assert!(s.offer(d(1, 60), 2, 100).is_ok());
        assert_eq!(s.offer(d(1, 60), 2, 100), Err(Refused::QueueFull));
        assert!(s.offer(d(1, 40), 2, 100).is_ok());
        assert_eq!(s.offer(d(1, 0), 2, 100), Err(Refused::QueueFull));
        assert_eq!(s.queued_bytes, 100);
        s.pop();
        assert_eq!(s.queued_bytes, 40);
    }

    #[test]
    fn flights_follow_qos1_and_qos2_and_packet_ids_are_not_reused_while_in_flight() {
        let slot = SessionSlot::new(Arc::from("c"), 0);
        let mut s = slot.lock();
        let a = s.alloc_pkid();
        s.push_flight(a, d(1, 1));
        let b = s.alloc_pkid();
        s.push_flight(b, d(2, 1));
        assert_ne!(a, b);
        assert!(
            s.complete(b, Flight::Ack).is_none(),
            "QoS 2 needs PUBREC first"
        );
        assert!(s.released(b).is_some());
        assert!(s.released(b).is_none(), "a second PUBREC changes nothing");
        assert!(s.complete(b, Flight::Comp).is_some());
        assert!(s.complete(a, Flight::Ack).is_some());
        assert!(s.inflight.is_empty());
        // Wrap-around skips an id still in flight.
        s.next_pkid = u16::MAX - 1;
        s.push_flight(1, d(1, 1));
        assert_eq!(s.alloc_pkid(), u16::MAX);
        assert_eq!(s.alloc_pkid(), 2);
    }
}
