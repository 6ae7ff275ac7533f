//! Who may connect, and where each identity may publish and subscribe.
//!
//! Identities: a username checked against an argon2 password file, or (mutual TLS) the common
//! name of the client certificate, which then stands for the username. Anonymous clients are
//! refused unless the config allows them (the demo config only); an anonymous client's client id
//! stands for its username, so the demo's simulated monitors fall under the same per-device
//! rules as real ones.
//!
//! Rules are Mosquitto's ACL file format, so hospital IT can reuse what they know:
//!
//! ```text
//! # applies to every identity; %u is the username, %c the client id
//! pattern write ward/v1/dev/%u/#
//! user integration
//! topic read ward/v1/dev/+/alarm
//! topic deny ward/v1/dev/+/wave/#
//! ```
//!
//! `topic` lines before any `user` line apply to anonymous clients. A `deny` rule that matches
//! wins over any grant. Without an ACL file the default is: every authenticated device reads
//! and writes only under its own prefix, `ward/v1/dev/%u/#`; anonymous clients (allowed only
//! in the demo configuration) may use any topic, as in Mosquitto without an ACL file.

use crate::router::topic_matches;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{file}:{line}: {reason}")]
    Parse {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
}

/// Who a connection is, as far as rules are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Username, certificate common name, or (anonymous, when allowed) the client id.
    pub username: Option<String>,
    pub client_id: String,
    pub anonymous: bool,
}

/// Access a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

#[derive(Debug, Clone)]
struct Rule {
    /// `None`: a `pattern` (everyone); `Some("")`: anonymous; `Some(user)`: that user.
    user: Option<String>,
    access: Access,
    topic: String,
}

/// Parsed ACL rules.
#[derive(Debug, Clone)]
pub struct Acl {
    rules: Vec<Rule>,
}

impl Default for Acl {
    fn default() -> Self {
        Self {
            rules: vec![
                Rule {
                    user: Some(String::new()),
                    access: Access::ReadWrite,
                    topic: "#".into(),
                },
                Rule {
                    user: None,
                    access: Access::ReadWrite,
                    topic: "ward/v1/dev/%u/#".into(),
                },
            ],
        }
    }
}

impl Acl {
    pub fn parse(text: &str, file: &str) -> Result<Self, AuthError> {
        let err = |line: usize, reason: String| AuthError::Parse {
            file: file.to_string(),
            line,
            reason,
        };
        let mut rules = Vec::new();
        let mut current_user: Option<String> = Some(String::new());
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (kw, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match kw {
                "user" => {
                    if rest.is_empty() {
                        return Err(err(i + 1, "`user` needs a name".into()));
                    }
                    current_user = Some(rest.to_string());
                }
                "topic" | "pattern" => {
                    let (access, topic) = match rest.split_once(char::is_whitespace) {
                        Some((a @ ("read" | "write" | "readwrite" | "deny"), t)) => (a, t.trim()),
                        _ => ("readwrite", rest),
                    };
                    let access = match access {
                        "read" => Access::Read,
                        "write" => Access::Write,
                        "deny" => Access::Deny,
                        _ => Access::ReadWrite,
                    };
                    if topic.is_empty() || !crate::router::valid_filter(topic) {
                        return Err(err(i + 1, format!("invalid topic filter {topic:?}")));
                    }
                    rules.push(Rule {
                        user: if kw == "pattern" {
                            None
                        } else {
                            current_user.clone()
                        },
                        access,
                        topic: topic.to_string(),
                    });
                }
                other => {
                    return Err(err(
                        i + 1,
                        format!("unknown keyword {other:?} (expected user, topic or pattern)"),
                    ))
                }
            }
        }
        Ok(Self { rules })
    }

    pub fn load(path: &Path) -> Result<Self, AuthError> {
        Self::parse(&read_text(path)?, &path.display().to_string())
    }

    /// The rules that apply to `id`, with %u and %c filled in. A pattern that needs %u does not
    /// apply to an identity without a username (Mosquitto's rule), and a value containing a
    /// wildcard or separator never fills a placeholder, so "a/+" as a client id cannot widen
    /// a rule.
    fn applicable<'a>(&'a self, id: &'a Identity) -> impl Iterator<Item = (Access, String)> + 'a {
        self.rules.iter().filter_map(move |r| {
            let applies = match &r.user {
                None => true,
                Some(u) if u.is_empty() => id.anonymous,
                Some(u) => !id.anonymous && id.username.as_deref() == Some(u.as_str()),
            };
            if !applies {
                return None;
            }
            let mut topic = r.topic.clone();
            if topic.contains("%u") {
                let u = id.username.as_deref().filter(|u| safe_level(u))?;
                topic = topic.replace("%u", u);
            }
            if topic.contains("%c") {
                if !safe_level(&id.client_id) {
                    return None;
                }
                topic = topic.replace("%c", &id.client_id);
            }
            Some((r.access, topic))
        })
    }

    pub fn can_publish(&self, id: &Identity, topic: &str) -> bool {
        let mut granted = false;
        for (access, rule) in self.applicable(id) {
            if topic_matches(topic, &rule) {
                match access {
                    Access::Deny => return false,
                    Access::Write | Access::ReadWrite => granted = true,
                    Access::Read => {}
                }
            }
        }
        granted
    }

    /// Whether `id` may read messages on `topic`: some read rule matches and no deny rule.
    pub fn can_read(&self, id: &Identity, topic: &str) -> bool {
        let mut granted = false;
        for (access, rule) in self.applicable(id) {
            if topic_matches(topic, &rule) {
                match access {
                    Access::Deny => return false,
                    Access::Read | Access::ReadWrite => granted = true,
                    Access::Write => {}
                }
            }
        }
        granted
    }

    /// A subscription is granted when its filter lies within a read rule and not wholly
    /// within a deny rule. One that merely overlaps a deny rule (`ward/v1/#` beside `deny
    /// ward/v1/dev/mon-07/alarm`) is granted with a read check on each delivery, as
    /// Mosquitto does, so a dashboard keeps the rest of the ward when one topic is denied.
    pub fn subscribe_access(&self, id: &Identity, filter: &str) -> SubAccess {
        let mut granted = false;
        let mut overlaps_deny = false;
        for (access, rule) in self.applicable(id) {
            match access {
                Access::Deny if filter_within(filter, &rule) => return SubAccess::Refused,
                Access::Deny if filters_overlap(filter, &rule) => overlaps_deny = true,
                Access::Read | Access::ReadWrite if filter_within(filter, &rule) => granted = true,
                _ => {}
            }
        }
        match (granted, overlaps_deny) {
            (false, _) => SubAccess::Refused,
            (true, false) => SubAccess::Granted,
            (true, true) => SubAccess::CheckEach,
        }
    }

    /// [`Acl::subscribe_access`] as a yes or no: granted, with or without per-message checks.
    pub fn can_subscribe(&self, id: &Identity, filter: &str) -> bool {
        self.subscribe_access(id, filter) != SubAccess::Refused
    }
}

/// The answer to a SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubAccess {
    Refused,
    /// Everything the filter can match may be read.
    Granted,
    /// Granted, but some topics it matches may not be read: each delivery is checked with
    /// [`Authorizer::read`].
    CheckEach,
}

fn read_text(path: &Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        file: path.display().to_string(),
        source,
    })
}

fn safe_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0'])
}

/// Every topic `inner` matches is matched by `outer`.
pub fn filter_within(inner: &str, outer: &str) -> bool {
    if inner.starts_with('$') != outer.starts_with('$') && !outer.starts_with('$') {
        // `#` in a rule does not grant `$SYS/...`; a `$` rule is needed.
        if inner.starts_with('$') {
            return false;
        }
    }
    let mut i = inner.split('/');
    let mut o = outer.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(l)) if l != "#" => {}
            (Some(ol), Some(il)) if ol == il && il != "+" && il != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Some topic is matched by both filters.
pub fn filters_overlap(a: &str, b: &str) -> bool {
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some(p), Some(q)) if p == "+" || q == "+" || p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Usernames and their argon2 password hashes (PHC strings), one `name:hash` per line, as
/// written by `wardwatch broker passwd`.
#[derive(Debug, Clone, Default)]
pub struct Passwords {
    users: HashMap<String, String>,
}

impl Passwords {
    pub fn parse(text: &str, file: &str) -> Result<Self, AuthError> {
        let mut users = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: String| AuthError::Parse {
                file: file.to_string(),
                line: i + 1,
                reason,
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| err("expected `username:argon2-hash`".into()))?;
            if user.is_empty() {
                return Err(err("empty username".into()));
            }
            // A PHC string: $argon2id$v=19$m=...,t=...,p=...$salt$hash.
            if !hash.starts_with("$argon2") || hash.split('$').count() != 6 {
                return Err(err(
                    "not a password hash (expected an argon2 PHC string)".into()
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(Self { users })
    }

    pub fn load(path: &Path) -> Result<Self, AuthError> {
        Self::parse(&read_text(path)?, &path.display().to_string())
    }

    /// Adds or replaces a user (the station's own simulated monitors, for instance).
    pub fn insert(&mut self, user: &str, phc_hash: String) {
        self.users.insert(user.to_string(), phc_hash);
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks a password. Slow on purpose (argon2); call it off the async threads.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    }
}

/// Hashes a password for the password file (argon2id, default parameters, random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The decision hook. The built-in [`FileAuth`] reads a password file and an ACL file; the
/// station could plug in its own (for example, devices provisioned in its database).
pub trait Authorizer: Send + Sync {
    /// Checks credentials. `cert_name` is the client certificate's common name under mutual
    /// TLS. Returns the identity, or the MQTT 5 reason code for CONNACK.
    fn connect(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
        cert_name: Option<&str>,
    ) -> Result<Identity, u8>;
    fn publish(&self, id: &Identity, topic: &str) -> bool;
    fn subscribe(&self, id: &Identity, filter: &str) -> SubAccess;
    /// Whether a message on `topic` may be delivered to `id` (asked only for subscriptions
    /// granted with [`SubAccess::CheckEach`]).
    fn read(&self, id: &Identity, topic: &str) -> bool;
}

/// Password file + ACL, Mosquitto style.
#[derive(Debug, Clone, Default)]
pub struct FileAuth {
    pub allow_anonymous: bool,
    pub passwords: Passwords,
    pub acl: Acl,
}

impl Authorizer for FileAuth {
    fn connect(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
        cert_name: Option<&str>,
    ) -> Result<Identity, u8> {
        use crate::codec::reason;
        if let Some(cn) = cert_name {
            // The certificate was verified against the configured CA during the handshake; its
            // name is the identity, whatever username the client claims.
            return Ok(Identity {
                username: Some(cn.to_string()),
                client_id: client_id.to_string(),
                anonymous: false,
            });
        }
        match (username, password) {
            (Some(u), Some(p)) if self.passwords.verify(u, p) => Ok(Identity {
                username: Some(u.to_string()),
                client_id: client_id.to_string(),
                anonymous: false,
            }),
            (Some(_), _) => Err(reason::BAD_USERNAME_OR_PASSWORD),
            (None, _) if self.allow_anonymous => Ok(Identity {
                username: Some(client_id.to_string()),
                client_id: client_id.to_string(),
                anonymous: true,
            }),
            (None, _) => Err(reason::NOT_AUTHORIZED),
        }
    }

    fn publish(&self, id: &Identity, topic: &str) -> bool {
        self.acl.can_publish(id, topic)
    }

    fn subscribe(&self, id: &Identity, filter: &str) -> SubAccess {
        self.acl.subscribe_access(id, filter)
    }

    fn read(&self, id: &Identity, topic: &str) -> bool {
        self.acl.can_read(id, topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(u: &str, c: &str) -> Identity {
        Identity {
            username: Some(u.into()),
            client_id: c.into(),
            anonymous: false,
        }
    }

    #[test]
    fn default_acl_keeps_each_device_under_its_own_prefix() {
        let acl = Acl::default();
        let m1 = user("m1", "whatever");
        assert!(acl.can_publish(&m1, "ward/v1/dev/m1/vitals"));
        assert!(!acl.can_publish(&m1, "ward/v1/dev/m2/vitals"));
        assert!(
            !acl.can_publish(&m1, "ward/v1/dev/m10/vitals"),
            "a prefix of another id"
        );
        assert!(acl.can_subscribe(&m1, "ward/v1/dev/m1/#"));
        assert!(!acl.can_subscribe(&m1, "ward/v1/dev/+/vitals"));
        assert!(!acl.can_subscribe(&m1, "#"));
        // A username with a wildcard or separator never fills %u.
        let sneaky = user("m1/../+", "c");
        assert!(!acl.can_publish(&sneaky, "ward/v1/dev/m1/../+/vitals"));
        // Anonymous (demo only): anything but $SYS.
        let anon = Identity {
            username: Some("c9".into()),
            client_id: "c9".into(),
            anonymous: true,
        };
        assert!(acl.can_publish(&anon, "ward/v1/dev/m2/vitals"));
        assert!(acl.can_subscribe(&anon, "ward/#"));
        assert!(!acl.can_subscribe(&anon, "$SYS/#"));
    }

    #[test]
    fn mosquitto_style_file_with_users_patterns_and_deny() {
        let acl = Acl::parse(
            "# comment\ntopic read public/#\nuser integration\ntopic read ward/v1/dev/+/alarm\ntopic read ward/#\ntopic deny ward/v1/dev/+/wave/#\npattern write clients/%c/out\n",
            "acl",
        )
        .unwrap();
        let anon = Identity {
            username: Some("c9".into()),
            client_id: "c9".into(),
            anonymous: true,
        };
        assert!(acl.can_subscribe(&anon, "public/x"));
        assert!(!acl.can_subscribe(&user("integration", "i"), "public/x"));
        let integ = user("integration", "i1");
        assert!(acl.can_subscribe(&integ, "ward/v1/dev/+/alarm"));
        assert_eq!(
            acl.subscribe_access(&integ, "ward/#"),
            SubAccess::CheckEach,
            "overlaps a deny rule: granted, checked per message"
        );
        assert!(acl.can_read(&integ, "ward/v1/dev/m1/vitals"));
        assert!(!acl.can_read(&integ, "ward/v1/dev/m1/wave/ecg"));
        assert_eq!(
            acl.subscribe_access(&integ, "ward/v1/dev/m1/wave/#"),
            SubAccess::Refused,
            "wholly denied"
        );
        assert!(!acl.can_subscribe(&integ, "ward/v1/dev/m1/wave/ecg"));
        assert!(acl.can_publish(&integ, "clients/i1/out"));
        assert!(!acl.can_publish(&integ, "clients/i2/out"));
        for (bad, want) in [
            ("topic", "invalid topic filter"),
            ("topic read a/#/b", "invalid topic filter"),
            ("user", "needs a name"),
            ("allow all", "unknown keyword"),
        ] {
            let e = Acl::parse(bad, "f.acl").unwrap_err().to_string();
            assert!(e.contains("f.acl:1") && e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn filter_containment_and_overlap() {
        assert!(filter_within("a/b", "a/+"));
        assert!(filter_within("a/+", "a/+"));
        assert!(!filter_within("a/#", "a/+"));
        assert!(filter_within("a/b/#", "a/#"));
        assert!(!filter_within("a", "a/b"));
        assert!(!filter_within("$SYS/x", "#"));
        assert!(filter_within("$SYS/x", "$SYS/#"));
        assert!(filters_overlap("a/+/c", "a/b/#"));
        assert!(!filters_overlap("a/b", "a/c"));
    }

    #[test]
    fn passwords_verify_only_the_right_secret_and_refuse_bad_lines() {
        let h = hash_password("s3cret").unwrap();
        let pw = Passwords::parse(&format!("m1:{h}\n\n# x\n"), "pw").unwrap();
        assert!(pw.verify("m1", "s3cret"));
        assert!(!pw.verify("m1", "wrong"));
        assert!(!pw.verify("m2", "s3cret"));
        let auth = FileAuth {
            allow_anonymous: false,
            passwords: pw,
            acl: Acl::default(),
        };
        assert_eq!(
            auth.connect("c", Some("m1"), Some("wrong"), None),
            Err(crate::codec::reason::BAD_USERNAME_OR_PASSWORD)
        );
        assert_eq!(
            auth.connect("c", None, None, None),
            Err(crate::codec::reason::NOT_AUTHORIZED)
        );
        assert_eq!(
            auth.connect("c", None, None, Some("m7")).unwrap().username,
            Some("m7".into())
        );
        for (bad, want) in [
            ("nocolon", "expected"),
            (":$argon2id$x", "empty username"),
            ("u:plaintext", "not a password hash"),
        ] {
            let e = Passwords::parse(bad, "pw").unwrap_err().to_string();
            assert!(e.contains("pw:1") && e.contains(want), "{bad}: {e}");
        }
    }
}
