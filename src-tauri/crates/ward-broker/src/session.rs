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
    /// Spilled: the payload (this many bytes) is only on disk and `msg` carries an empty one;
    /// it is read back just before sending.
    pub spilled: Option<usize>,
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
    /// Payload bytes of the queued deliveries held in memory.
    pub queued_bytes: usize,
    /// Queued deliveries whose payload is only on disk, and their payload bytes.
    pub spilled: usize,
    pub spilled_bytes: usize,
    /// Room promised to messages planned (acknowledgement pending their commit) but not yet
    /// queued: in memory (messages, bytes) and on disk (bytes). Counted in every room check,
    /// so a burst of concurrent publishes cannot all be promised the same last place.
    pub planned: usize,
    pub planned_bytes: usize,
    pub planned_spill: usize,
    /// Some delivery of this session has a row on disk, so ending it must delete its rows
    /// (a clean session has rows only once it has spilled).
    pub has_rows: bool,
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
                spilled: 0,
                spilled_bytes: 0,
                planned: 0,
                planned_bytes: 0,
                planned_spill: 0,
                has_rows: false,
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
    /// Deliveries queued with their payload in memory.
    pub fn in_memory(&self) -> usize {
        self.queue.len() - self.spilled
    }

    /// Whether one more payload of `len` bytes fits the in-memory limits, counting what is
    /// already promised.
    pub fn memory_has_room(&self, len: usize, max_msgs: usize, max_bytes: usize) -> bool {
        self.in_memory() + self.planned < max_msgs
            && self.queued_bytes + self.planned_bytes + len <= max_bytes
    }

    /// Whether `len` more bytes fit the spill budget, counting what is already promised.
    pub fn spill_has_room(&self, len: usize, max_bytes: usize) -> bool {
        self.spilled_bytes + self.planned_spill + len <= max_bytes
    }

    /// Promises room for one message of `len` bytes, in memory or (`spill`) on disk.
    pub fn reserve(&mut self, spill: bool, len: usize) {
        if spill {
            self.planned_spill += len;
        } else {
            self.planned += 1;
            self.planned_bytes += len;
        }
    }

    /// Takes back a promise made by [`Session::reserve`] (the message is being queued now,
    /// or was never acknowledged).
    pub fn unreserve(&mut self, spill: bool, len: usize) {
        if spill {
            self.planned_spill = self.planned_spill.saturating_sub(len);
        } else {
            self.planned = self.planned.saturating_sub(1);
            self.planned_bytes = self.planned_bytes.saturating_sub(len);
        }
    }

    /// Queues a delivery, waking the connection if there is one.
    ///
    /// `accepted` says the message was acknowledged to its publisher with this session's room
    /// checked beforehand ([`crate::Shared::plan`]); such a delivery is never refused for
    /// lack of room, as refusing it now would lose what was promised. The in-memory limits
    /// may then be passed by the messages planned while the check ran, at most one group
    /// commit's worth. Everything else (QoS 0, retained copies) is refused when full.
    pub fn offer(
        &mut self,
        d: Delivery,
        max_msgs: usize,
        max_bytes: usize,
        accepted: bool,
    ) -> Result<(), Refused> {
        if self.removed {
            return Err(Refused::Ended);
        }
        if self.link.is_none() && (d.qos == 0 || self.expiry == 0) {
            return Err(Refused::NotKept);
        }
        if let Some(len) = d.spilled {
            self.spilled += 1;
            self.spilled_bytes += len;
        } else {
            let len = d.msg.payload.len();
            let keep = accepted && d.qos > 0;
            if !keep && !self.memory_has_room(len, max_msgs, max_bytes) {
                return Err(Refused::QueueFull);
            }
            self.queued_bytes += len;
        }
        self.has_rows |= d.durable;
        self.queue.push_back(d);
        if let Some(l) = &self.link {
            l.wake.notify_one();
        }
        Ok(())
    }

    pub fn pop(&mut self) -> Option<Delivery> {
        let d = self.queue.pop_front()?;
        match d.spilled {
            Some(len) => {
                self.spilled -= 1;
                self.spilled_bytes = self.spilled_bytes.saturating_sub(len);
            }
            None => self.queued_bytes = self.queued_bytes.saturating_sub(d.msg.payload.len()),
        }
        Some(d)
    }

    /// Ids of the spilled messages among the next `n` queued deliveries.
    pub fn spilled_ahead(&self, n: usize) -> Vec<u64> {
        self.queue
            .iter()
            .take(n)
            .filter(|d| d.spilled.is_some())
            .map(|d| d.msg.id)
            .collect()
    }

    /// Puts payloads read back from disk into the spilled deliveries `asked` named (ids from
    /// `spilled_ahead`, all among the first entries, which only this session's connection
    /// takes from). Stubs queued since, which were not asked for, stay spilled. One asked
    /// for whose payload was not found is taken out of the queue and returned: its row is
    /// gone (a failed disk), so it cannot be sent.
    pub fn unspill(
        &mut self,
        asked: &[u64],
        mut found: HashMap<u64, bytes::Bytes>,
    ) -> Vec<Delivery> {
        let asked: HashSet<u64> = asked.iter().copied().collect();
        let mut missing = Vec::new();
        let mut seen = 0;
        for (i, d) in self.queue.iter_mut().enumerate() {
            if seen == asked.len() {
                break;
            }
            let Some(len) = d.spilled else { continue };
            if !asked.contains(&d.msg.id) {
                continue;
            }
            seen += 1;
            let Some(p) = found.remove(&d.msg.id) else {
                missing.push(i);
                continue;
            };
            self.spilled -= 1;
            self.spilled_bytes = self.spilled_bytes.saturating_sub(len);
            self.queued_bytes += p.len();
            let mut m = (*d.msg).clone();
            m.payload = p;
            d.msg = Arc::new(m);
            d.spilled = None;
        }
        let mut lost = Vec::with_capacity(missing.len());
        // Back to front, so the earlier indices stay valid.
        for i in missing.into_iter().rev() {
            if let Some(d) = self.queue.remove(i) {
                self.spilled -= 1;
                self.spilled_bytes = self.spilled_bytes.saturating_sub(d.spilled.unwrap_or(0));
                lost.push(d);
            }
        }
        lost.reverse();
        lost
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
        self.spilled = 0;
        self.spilled_bytes = 0;
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
                hold: None,
            }),
            qos,
            retain: false,
            sub_ids: Vec::new(),
            durable: false,
            spilled: None,
        }
    }

    #[test]
    fn offline_sessions_keep_only_qos1_and_2_and_only_when_persistent() {
        let slot = SessionSlot::new(Arc::from("c"), 60);
        let mut s = slot.lock();
        assert_eq!(s.offer(d(0, 1), 10, 100, true), Err(Refused::NotKept));
        assert_eq!(s.offer(d(1, 1), 10, 100, true), Ok(()));
        s.expiry = 0;
        assert_eq!(s.offer(d(2, 1), 10, 100, true), Err(Refused::NotKept));
    }

    fn stub(id: u64, n: usize) -> Delivery {
        let mut x = d(1, 0);
        let mut m = (*x.msg).clone();
        m.id = id;
        x.msg = Arc::new(m);
        x.durable = true;
        x.spilled = Some(n);
        x
    }

    #[test]
    fn stubs_spilled_while_their_payloads_are_read_stay_spilled_and_are_not_lost() {
        let slot = SessionSlot::new(Arc::from("c"), 60);
        let mut s = slot.lock();
        s.offer(stub(1, 3), 10, 100, true).unwrap();
        s.offer(stub(2, 3), 10, 100, true).unwrap();
        let asked = s.spilled_ahead(64);
        assert_eq!(asked, vec![1, 2]);
        // Spilled after the ids were taken, before the payloads came back.
        s.offer(stub(3, 3), 10, 100, true).unwrap();
        let found = [1u64, 2]
            .into_iter()
            .map(|id| (id, bytes::Bytes::from_static(b"abc")))
            .collect();
        assert!(s.unspill(&asked, found).is_empty(), "nothing lost");
        assert_eq!((s.spilled, s.spilled_bytes, s.queued_bytes), (1, 3, 6));
        assert_eq!(s.spilled_ahead(64), vec![3]);
        // A payload asked for and not found is taken out (its row is gone).
        assert_eq!(s.unspill(&[3], HashMap::new()).len(), 1);
        assert_eq!((s.queue.len(), s.spilled, s.spilled_bytes), (2, 0, 0));
    }

    #[test]
    fn queue_limits_by_count_and_bytes() {
        let slot = SessionSlot::new(Arc::from("c"), 60);
        let mut s = slot.lock();
        assert!(s.offer(d(1, 60), 2, 100, false).is_ok());
        assert_eq!(s.offer(d(1, 60), 2, 100, false), Err(Refused::QueueFull));
        assert!(s.offer(d(1, 40), 2, 100, false).is_ok());
        assert_eq!(s.offer(d(1, 0), 2, 100, false), Err(Refused::QueueFull));
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
