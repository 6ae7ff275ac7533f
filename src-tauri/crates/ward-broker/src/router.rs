//! Subscriptions and message routing.
//!
//! A unit has a few hundred connections, nearly all of them publishers; subscribers are the
//! station itself and a handful of tools. A flat list scanned per message is cheaper than a
//! trie at this scale (measured in docs/BENCHMARKS.md: the scan is a few per cent of a
//! message's cost) and simple to reason about.
//!
//! Subscriptions belong to sessions (by client id), so a persistent session keeps receiving
//! into its queue while its client is away, or to in-process subscribers (the station).

use crate::auth::{Authorizer, Identity};
use crate::codec::{Qos, SubOpts};
use crate::session::SessionSlot;
use crate::Message;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

pub(crate) enum Target {
    Session(Arc<SessionSlot>),
    /// An in-process subscriber (the station's ingest): no second TCP hop. The flag: it
    /// confirms what it keeps (QoS 1/2 acknowledgements wait for it; see `hold.rs`).
    Local(u64, mpsc::Sender<Message>, bool),
}

/// An in-process subscriber's options: everything up to QoS 2, retain flags as published, no
/// retained messages on subscribing (the station reads current state from its own store).
pub(crate) const LOCAL_OPTS: SubOpts = SubOpts {
    qos: 2,
    no_local: false,
    retain_as_published: true,
    retain_handling: 2,
    sub_id: None,
};

pub(crate) struct Entry {
    /// The filter as matched (for `$share/g/f`, just `f`).
    pub filter: String,
    /// The share name of a shared subscription.
    pub share: Option<String>,
    pub opts: SubOpts,
    pub target: Target,
    /// Granted over a filter that overlaps a deny rule: each message is checked against the
    /// subscriber's read rights before it is delivered.
    pub check: Option<Arc<Identity>>,
}

impl Entry {
    fn key(&self) -> Key<'_> {
        match &self.target {
            Target::Session(s) => Key::Client(&s.client_id),
            Target::Local(id, ..) => Key::Local(*id),
        }
    }
}

#[derive(PartialEq, Eq)]
enum Key<'a> {
    Client(&'a str),
    Local(u64),
}

/// One subscriber's view of a message: the highest QoS among its matching subscriptions, the
/// retain flag as it should see it, and every matching subscription identifier.
pub(crate) struct SessionTarget {
    pub slot: Arc<SessionSlot>,
    pub qos: Qos,
    pub retain_as_published: bool,
    pub sub_ids: Vec<u32>,
}

#[derive(Default)]
pub(crate) struct Targets {
    pub sessions: Vec<SessionTarget>,
    pub locals: Vec<(mpsc::Sender<Message>, Qos, bool)>,
}

#[derive(Default)]
pub(crate) struct Router {
    subs: Vec<Entry>,
    /// Round-robin position per shared group.
    rr: AtomicUsize,
}

/// Splits `$share/{group}/{filter}` (MQTT 5 4.8.2) into share name and filter. `None` for a
/// malformed share.
pub fn split_share(filter: &str) -> Option<(Option<&str>, &str)> {
    match filter.strip_prefix("$share/") {
        None => Some((None, filter)),
        Some(rest) => match rest.split_once('/') {
            Some((group, f))
                if !group.is_empty() && !group.contains(['+', '#']) && valid_filter(f) =>
            {
                Some((Some(group), f))
            }
            _ => None,
        },
    }
}

impl Router {
    /// Adds or replaces (same subscriber, same filter and share) a subscription. Returns true
    /// when it is new.
    pub fn subscribe(&mut self, e: Entry) -> bool {
        let key = e.key();
        if let Some(existing) = self
            .subs
            .iter_mut()
            .find(|s| s.key() == key && s.filter == e.filter && s.share == e.share)
        {
            *existing = e;
            false
        } else {
            self.subs.push(e);
            true
        }
    }

    pub fn unsubscribe_client(&mut self, client: &str, filter: &str, share: Option<&str>) -> bool {
        let before = self.subs.len();
        self.subs.retain(|s| {
            !(s.key() == Key::Client(client) && s.filter == filter && s.share.as_deref() == share)
        });
        before != self.subs.len()
    }

    pub fn remove_client(&mut self, client: &str) {
        self.subs.retain(|s| s.key() != Key::Client(client));
    }

    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Where a message on `topic` from `publisher` goes. Overlapping subscriptions of one
    /// session give one delivery at the highest QoS, carrying all their identifiers; each
    /// shared group gives one delivery, to an online member when there is one.
    pub fn targets(&self, topic: &str, publisher: &str, auth: &dyn Authorizer) -> Targets {
        let mut out = Targets::default();
        let mut groups: Vec<(&str, &str, Vec<&Entry>)> = Vec::new();
        for s in &self.subs {
            if !topic_matches(topic, &s.filter) {
                continue;
            }
            if let Some(id) = &s.check {
                if !auth.read(id, topic) {
                    continue;
                }
            }
            if let Some(g) = &s.share {
                match groups
                    .iter_mut()
                    .find(|(gg, f, _)| *gg == g.as_str() && *f == s.filter.as_str())
                {
                    Some((_, _, members)) => members.push(s),
                    None => groups.push((g, &s.filter, vec![s])),
                }
                continue;
            }
            match &s.target {
                Target::Local(_, tx, c) => out.locals.push((tx.clone(), s.opts.qos, *c)),
                Target::Session(slot) => {
                    if s.opts.no_local && &*slot.client_id == publisher {
                        continue;
                    }
                    add(&mut out.sessions, slot, &s.opts);
                }
            }
        }
        for (_, _, members) in groups {
            let start = self.rr.fetch_add(1, Ordering::Relaxed);
            let online = |e: &&Entry| match &e.target {
                Target::Session(slot) => slot.is_online(),
                Target::Local(..) => true,
            };
            let pick = (0..members.len())
                .map(|i| members[(start + i) % members.len()])
                .find(online)
                .unwrap_or(members[start % members.len()]);
            match &pick.target {
                Target::Local(_, tx, c) => out.locals.push((tx.clone(), pick.opts.qos, *c)),
                Target::Session(slot) => add(&mut out.sessions, slot, &pick.opts),
            }
        }
        out
    }
}

fn add(out: &mut Vec<SessionTarget>, slot: &Arc<SessionSlot>, o: &SubOpts) {
    match out.iter_mut().find(|t| Arc::ptr_eq(&t.slot, slot)) {
        Some(t) => {
            t.qos = t.qos.max(o.qos);
            t.retain_as_published |= o.retain_as_published;
            t.sub_ids.extend(o.sub_id);
        }
        None => out.push(SessionTarget {
            slot: slot.clone(),
            qos: o.qos,
            retain_as_published: o.retain_as_published,
            sub_ids: o.sub_id.into_iter().collect(),
        }),
    }
}

/// A topic name a client may publish to: not empty, no wildcards, no NUL.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// A subscription filter: `+` takes a whole level, `#` only as the whole last level.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, l)| {
        if l.contains('#') {
            *l == "#" && i == last
        } else if l.contains('+') {
            *l == "+"
        } else {
            true
        }
    })
}

/// MQTT matching, including the rule that topics starting with `$` are not matched by a filter
/// starting with a wildcard (so `#` does not see `$SYS/...`).
pub fn topic_matches(topic: &str, filter: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut t = topic.split('/');
    let mut f = filter.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_per_spec() {
        let cases = [
            ("a/b/c", "a/b/c", true),
            ("a/b/c", "a/+/c", true),
            ("a/b/c", "a/#", true),
            ("a", "a/#", true),
            ("a/b/c", "#", true),
            ("a/b/c", "+/+", false),
            ("a/b", "a/b/c", false),
            ("a//c", "a/+/c", true),
            ("$SYS/x", "#", false),
            ("$SYS/x", "+/x", false),
            ("$SYS/x", "$SYS/#", true),
            ("ward/v1/dev/m1/vitals", "ward/v1/dev/+/+", true),
            ("ward/v1/dev/m1/wave/x", "ward/v1/dev/+/+", false),
        ];
        for (topic, filter, want) in cases {
            assert_eq!(topic_matches(topic, filter), want, "{topic} vs {filter}");
        }
    }

    #[test]
    fn filter_and_topic_validation() {
        for ok in ["#", "+", "a/+/b", "a/#", "+/+/#"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a/#/b", "a#", "a/b+", "#/a"] {
            assert!(!valid_filter(bad), "{bad}");
        }
        assert!(valid_topic_name("a/b"));
        for bad in ["", "a/+", "a/#", "a\0b"] {
            assert!(!valid_topic_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn shared_subscription_names_parse() {
        assert_eq!(split_share("$share/g/a/#"), Some((Some("g"), "a/#")));
        assert_eq!(split_share("a/b"), Some((None, "a/b")));
        for bad in ["$share/g", "$share//a", "$share/g+/a", "$share/g/a/#/b"] {
            assert!(split_share(bad).is_none(), "{bad}");
        }
    }
}
