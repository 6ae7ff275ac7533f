//! Subscriptions and message routing.
//!
//! A unit has a few hundred connections, nearly all of them publishers; subscribers are the
//! station itself and a handful of tools. A flat list scanned per message is therefore cheaper
//! than a trie at this scale and simple to reason about; issue 3 revisits it with benchmarks.

use crate::codec::Qos;
use crate::Message;
use tokio::sync::mpsc;

/// Where a matching message goes.
#[derive(Clone)]
pub(crate) enum Sink {
    /// A network connection's outbound queue.
    Conn(mpsc::Sender<ToConn>),
    /// An in-process subscriber (the station's ingest): no second TCP hop.
    Local(mpsc::Sender<Message>),
}

/// What a connection task can be told by the rest of the broker.
pub(crate) enum ToConn {
    Deliver(Message, Qos),
}

pub(crate) struct Subscription {
    pub owner: u64,
    pub filter: String,
    pub qos: Qos,
    pub sink: Sink,
}

#[derive(Default)]
pub(crate) struct Router {
    subs: Vec<Subscription>,
}

impl Router {
    /// Adds or replaces (same owner, same filter) a subscription.
    pub fn subscribe(&mut self, sub: Subscription) {
        if let Some(existing) = self
            .subs
            .iter_mut()
            .find(|s| s.owner == sub.owner && s.filter == sub.filter)
        {
            *existing = sub;
        } else {
            self.subs.push(sub);
        }
    }

    pub fn unsubscribe(&mut self, owner: u64, filter: &str) -> bool {
        let before = self.subs.len();
        self.subs
            .retain(|s| !(s.owner == owner && s.filter == filter));
        before != self.subs.len()
    }

    pub fn remove_owner(&mut self, owner: u64) {
        self.subs.retain(|s| s.owner != owner);
    }

    /// The sinks a topic goes to, one per owner, at the highest QoS among that owner's
    /// matching subscriptions (overlapping subscriptions deliver once).
    pub fn targets(&self, topic: &str) -> Vec<(u64, Sink, Qos)> {
        let mut out: Vec<(u64, Sink, Qos)> = Vec::new();
        for s in &self.subs {
            if !topic_matches(topic, &s.filter) {
                continue;
            }
            match out.iter_mut().find(|(o, _, _)| *o == s.owner) {
                Some(entry) => entry.2 = entry.2.max(s.qos),
                None => out.push((s.owner, s.sink.clone(), s.qos)),
            }
        }
        out
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
    fn overlapping_subscriptions_deliver_once_at_max_qos() {
        let (tx, _rx) = mpsc::channel(1);
        let mut r = Router::default();
        for (filter, qos) in [("a/#", 0), ("a/b", 1), ("+/b", 0)] {
            r.subscribe(Subscription {
                owner: 7,
                filter: filter.into(),
                qos,
                sink: Sink::Local(tx.clone()),
            });
        }
        let t = r.targets("a/b");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].2, 1);
        assert!(r.unsubscribe(7, "a/b"));
        assert_eq!(r.targets("a/b")[0].2, 0);
        r.remove_owner(7);
        assert!(r.targets("a/b").is_empty());
    }
}
