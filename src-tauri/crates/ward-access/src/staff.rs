//! The station's staff at run time: users from the database, sessions at windows, nurses'
//! bed assignments, and the audit events for all of it (logins, failures, locks, denials,
//! user and assignment changes).
//!
//! Decisions come from the pure `access` module; this adds the state and the I/O around it.
//! Records and audit events go through the alarm driver's never-drop queue, so they are
//! written in the order they happened, after any alarm events already queued.
//!
//! Users created with the CLI while the station runs are found at their first login: a login
//! reads the user's row from the database and keeps whichever of it and the in-memory copy
//! is newer.

use crate::error::AccessError;
use crate::policy::{self as access, Action, Denial, Session, Sessions};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use ward_config::AccessPolicy;
use ward_model::{ErrorCode, Role, Username};
use ward_store::{wall_clock_ms, AuditEvent, Record, RecordSink, Store, UserRow};

/// Failed PIN or password unlocks a session survives; the next failure ends it, and the user
/// signs in again with the password. A 4-digit PIN cannot be guessed through the window.
const MAX_FAILED_UNLOCKS: u32 = 5;

/// The documented demo accounts (README, "Demo accounts"): only with `[access]
/// demo_accounts = true`, which the demo and test configurations set and a hospital's never
/// does.
pub const DEMO_PASSWORD: &str = "wardwatch-demo";
pub const DEMO_ACCOUNTS: [(&str, &str, Role, Option<&str>); 4] = [
    ("demo.nurse", "Demo Nurse", Role::Nurse, Some("1111")),
    (
        "demo.charge",
        "Demo Charge Nurse",
        Role::ChargeNurse,
        Some("2222"),
    ),
    ("demo.it", "Demo IT", Role::ItAdmin, None),
    ("demo.viewer", "Demo Viewer", Role::Viewer, None),
];

/// A user as the window and the CLI list them: no hashes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UserView {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub has_pin: bool,
    pub disabled: bool,
    pub beds: Vec<String>,
}

/// A change to a user. `None` leaves a field as it is (for a new user, password and role
/// are required).
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub username: String,
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub password: Option<String>,
    /// `Some(None)` removes the PIN.
    pub pin: Option<Option<String>>,
    pub disabled: Option<bool>,
}

/// Applies a change to the stored row (or creates one). Pure apart from hashing; shared by
/// the station and the offline CLI. Returns the new row and the audit event's kind and
/// detail (which never holds a secret).
pub fn apply_change(
    existing: Option<&UserRow>,
    change: &UserChange,
    by: &str,
    now_ms: i64,
) -> Result<(UserRow, &'static str, serde_json::Value), Denial> {
    let name = Username::new(change.username.clone())
        .map_err(|e| Denial::new(ErrorCode::BadUsername, e.to_string()))?;
    let password = change
        .password
        .as_deref()
        .map(|p| access::check_password(p).and_then(|_| access::hash_secret(p)))
        .transpose()?;
    let pin = match &change.pin {
        Some(Some(p)) => Some(Some(
            access::check_pin(p).and_then(|_| access::hash_secret(p))?,
        )),
        Some(None) => Some(None),
        None => None,
    };
    let display = change
        .display_name
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    if let Some(d) = display {
        if d.chars().count() > 80 {
            return Err(Denial::new(
                ErrorCode::BadName,
                "a display name is at most 80 characters",
            ));
        }
    }
    let row = match existing {
        None => UserRow {
            username: name.to_string(),
            display_name: display.unwrap_or(name.as_str()).to_string(),
            role: change
                .role
                .ok_or_else(|| Denial::new(ErrorCode::MissingRole, "a new user needs a role"))?
                .as_str()
                .to_string(),
            secret_hash: password.clone().ok_or_else(|| {
                Denial::new(ErrorCode::MissingPassword, "a new user needs a password")
            })?,
            pin_hash: pin.clone().flatten(),
            disabled: change.disabled.unwrap_or(false),
            t_ms: now_ms,
            changed_by: by.to_string(),
        },
        Some(old) => UserRow {
            username: old.username.clone(),
            display_name: display
                .map(str::to_string)
                .unwrap_or(old.display_name.clone()),
            role: change
                .role
                .map(|r| r.as_str().to_string())
                .unwrap_or(old.role.clone()),
            secret_hash: password.clone().unwrap_or(old.secret_hash.clone()),
            pin_hash: pin.clone().unwrap_or(old.pin_hash.clone()),
            disabled: change.disabled.unwrap_or(old.disabled),
            // Strictly newer than the old row, so "newest wins" between the database and a
            // station's memory cannot pick the old one within the same millisecond.
            t_ms: now_ms.max(old.t_ms + 1),
            changed_by: by.to_string(),
        },
    };
    let detail = serde_json::json!({
        "user": row.username,
        "display_name": row.display_name,
        "role": row.role,
        "disabled": row.disabled,
        "password_changed": password.is_some(),
        "pin": match &change.pin { Some(Some(_)) => "set", Some(None) => "removed", None => "unchanged" },
    });
    let kind = if existing.is_some() {
        "user.changed"
    } else {
        "user.created"
    };
    Ok((row, kind, detail))
}

/// Creates or changes a user directly in the database (the `wardwatch users` CLI; the
/// station need not run). The row and its audit event are one transaction.
pub fn change_user_offline(
    db: &std::path::Path,
    origin: &str,
    by: &str,
    change: &UserChange,
) -> Result<UserView, AccessError> {
    let mut store = Store::open(db)?;
    let existing = store.user(&change.username)?;
    let now = wall_clock_ms();
    let (row, kind, detail) = apply_change(existing.as_ref(), change, by, now)?;
    let ev = AuditEvent {
        origin: origin.to_string(),
        t_ms: now,
        actor: by.to_string(),
        kind: kind.to_string(),
        bed: None,
        detail: detail.to_string(),
    };
    store.write_batch(&[Record::User(row.clone()), Record::Audit(ev)])?;
    Ok(view(&row, &BTreeSet::new()))
}

fn role_of(row: &UserRow) -> Role {
    // A role the build does not know (a newer station wrote it) acts as view-only.
    Role::parse(&row.role).unwrap_or(Role::Viewer)
}

fn view(row: &UserRow, beds: &BTreeSet<String>) -> UserView {
    UserView {
        username: row.username.clone(),
        display_name: row.display_name.clone(),
        role: role_of(row),
        has_pin: row.pin_hash.is_some(),
        disabled: row.disabled,
        beds: beds.iter().cloned().collect(),
    }
}

struct State {
    sessions: Sessions,
    users: BTreeMap<String, UserRow>,
    beds: BTreeMap<String, BTreeSet<String>>,
    failed_unlocks: HashMap<String, u32>,
}

pub struct Staff {
    policy: AccessPolicy,
    db: PathBuf,
    origin: String,
    out: Arc<dyn RecordSink>,
    state: Mutex<State>,
}

pub fn new_token() -> Result<String, AccessError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)
        .map_err(|e| AccessError::Internal(format!("no randomness for a session token: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Staff {
    pub fn start(
        policy: AccessPolicy,
        db: PathBuf,
        origin: String,
        out: Arc<dyn RecordSink>,
    ) -> Result<Self, AccessError> {
        let store = Store::open_read_only(&db)?;
        let users: BTreeMap<String, UserRow> = store
            .users()?
            .into_iter()
            .map(|u| (u.username.clone(), u))
            .collect();
        let mut beds: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (u, b) in store.assignments()? {
            beds.entry(u).or_default().insert(b);
        }
        let staff = Self {
            state: Mutex::new(State {
                sessions: Sessions::new(policy.auto_lock_ms),
                users,
                beds,
                failed_unlocks: HashMap::new(),
            }),
            policy,
            db,
            origin,
            out,
        };
        if staff.policy.demo_accounts {
            staff.create_demo_accounts()?;
        }
        Ok(staff)
    }

    fn create_demo_accounts(&self) -> Result<(), AccessError> {
        let mut st = self.lock_state()?;
        for (name, display, role, pin) in DEMO_ACCOUNTS {
            if st.users.contains_key(name) {
                continue;
            }
            let change = UserChange {
                username: name.into(),
                display_name: Some(display.into()),
                role: Some(role),
                password: Some(DEMO_PASSWORD.into()),
                pin: Some(pin.map(str::to_string)),
                disabled: None,
            };
            let (row, kind, detail) = apply_change(None, &change, "system", wall_clock_ms())?;
            tracing::warn!(user = name, "demo account created ([access] demo_accounts)");
            st.users.insert(row.username.clone(), row.clone());
            self.emit(vec![Record::User(row)], "system", kind, None, detail);
        }
        Ok(())
    }

    fn lock_state(&self) -> Result<std::sync::MutexGuard<'_, State>, AccessError> {
        self.state
            .lock()
            .map_err(|_| AccessError::Internal("the user directory lock is poisoned".into()))
    }

    /// Queues records and their audit event on the driver's never-drop path.
    fn emit(
        &self,
        mut records: Vec<Record>,
        actor: &str,
        kind: &str,
        bed: Option<&str>,
        detail: serde_json::Value,
    ) {
        records.push(Record::Audit(AuditEvent {
            origin: self.origin.clone(),
            t_ms: wall_clock_ms(),
            actor: actor.to_string(),
            kind: kind.to_string(),
            bed: bed.map(str::to_string),
            detail: detail.to_string(),
        }));
        if !self.out.append(records) {
            tracing::error!(kind, "audit event after the alarm driver stopped");
        }
    }

    /// Appends one audit event for something a user did elsewhere in the core (an export).
    pub fn audit(&self, actor: &str, kind: &str, bed: Option<&str>, detail: serde_json::Value) {
        self.emit(vec![], actor, kind, bed, detail)
    }

    /// Audits the sessions auto-lock has just locked.
    fn poll(&self, st: &mut State, now_ms: i64) {
        for user in st.sessions.poll(now_ms) {
            self.emit(
                vec![],
                &user,
                "session.locked",
                None,
                serde_json::json!({"reason": "inactivity", "after_s": self.policy.auto_lock_ms / 1000}),
            );
        }
    }

    /// The user's row: the database's or the in-memory one, whichever is newer.
    fn lookup(&self, st: &mut State, username: &str) -> Option<UserRow> {
        let from_db = Store::open_read_only(&self.db)
            .and_then(|s| s.user(username))
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read users; using the station's copy");
                None
            });
        let newest = match (from_db, st.users.get(username)) {
            (Some(d), Some(m)) if m.t_ms >= d.t_ms => m.clone(),
            (Some(d), _) => d,
            (None, m) => m?.clone(),
        };
        st.users.insert(newest.username.clone(), newest.clone());
        Some(newest)
    }

    fn deny(&self, actor: &str, action: &str, bed: Option<&str>, d: Denial) -> AccessError {
        tracing::warn!(user = actor, action, code = %d.code, reason = %d.reason, "denied");
        self.emit(
            vec![],
            actor,
            "access.denied",
            bed,
            serde_json::json!({"action": action, "code": d.code, "reason": d.reason}),
        );
        d.into()
    }

    pub fn login(
        &self,
        username: &str,
        secret: &str,
        now_ms: i64,
    ) -> Result<(String, Session), AccessError> {
        let mut st = self.lock_state()?;
        self.poll(&mut st, now_ms);
        // A malformed name is not echoed into the trail: it may be a password typed into the
        // wrong field.
        let actor = Username::new(username.trim())
            .map(|u| u.to_string())
            .unwrap_or_else(|_| "(malformed name)".into());
        let failed = |reason: &str| {
            self.emit(
                vec![],
                &actor,
                "session.login_failed",
                None,
                serde_json::json!({"reason": reason}),
            );
            // One message for every failure: the window does not tell which names exist.
            AccessError::Denied {
                code: ErrorCode::BadCredentials,
                reason: "unknown user or wrong password".into(),
            }
        };
        let Some(row) = self.lookup(&mut st, &actor) else {
            return Err(failed("unknown user"));
        };
        if row.disabled {
            return Err(failed("account disabled"));
        }
        if !access::verify_secret(&row.secret_hash, secret) {
            return Err(failed("wrong password"));
        }
        let token = new_token()?;
        let session = Session {
            username: row.username.clone(),
            display_name: row.display_name.clone(),
            role: role_of(&row),
            started_ms: now_ms,
            last_active_ms: now_ms,
            locked: false,
            has_pin: row.pin_hash.is_some(),
        };
        st.sessions.open(token.clone(), session.clone());
        self.emit(
            vec![],
            &row.username,
            "session.login",
            None,
            serde_json::json!({"role": session.role}),
        );
        Ok((token, session))
    }

    /// Unlocks a locked session with the user's PIN (if they have one) or password.
    pub fn unlock(&self, token: &str, secret: &str, now_ms: i64) -> Result<Session, AccessError> {
        let mut st = self.lock_state()?;
        self.poll(&mut st, now_ms);
        let Some(s) = st.sessions.peek(token, now_ms).cloned() else {
            return Err(AccessError::Denied {
                code: ErrorCode::NotSignedIn,
                reason: "no one is signed in at this window".into(),
            });
        };
        let row = self.lookup(&mut st, &s.username);
        let ok = row.as_ref().is_some_and(|r| {
            !r.disabled
                && (access::verify_secret(&r.secret_hash, secret)
                    || r.pin_hash
                        .as_deref()
                        .is_some_and(|p| access::verify_secret(p, secret)))
        });
        if !ok {
            let n = st.failed_unlocks.entry(token.to_string()).or_default();
            *n += 1;
            let n = *n;
            let ended = n >= MAX_FAILED_UNLOCKS;
            self.emit(
                vec![],
                &s.username,
                "session.unlock_failed",
                None,
                serde_json::json!({"failures": n, "session_ended": ended}),
            );
            if ended {
                st.sessions.close(token);
                st.failed_unlocks.remove(token);
                return Err(AccessError::Denied {
                    code: ErrorCode::SessionEnded,
                    reason: format!(
                        "{n} wrong PINs or passwords: signed out; sign in with the password"
                    ),
                });
            }
            return Err(AccessError::Denied {
                code: ErrorCode::BadCredentials,
                reason: "wrong PIN or password".into(),
            });
        }
        st.failed_unlocks.remove(token);
        let s = st
            .sessions
            .unlock(token, now_ms)
            .ok_or(AccessError::Denied {
                code: ErrorCode::NotSignedIn,
                reason: "no one is signed in at this window".into(),
            })?;
        self.emit(
            vec![],
            &s.username,
            "session.unlocked",
            None,
            serde_json::json!({}),
        );
        Ok(s)
    }

    pub fn lock(&self, token: &str) {
        if let Ok(mut st) = self.state.lock() {
            if let Some(user) = st.sessions.lock(token) {
                self.emit(
                    vec![],
                    &user,
                    "session.locked",
                    None,
                    serde_json::json!({"reason": "user"}),
                );
            }
        }
    }

    pub fn logout(&self, token: &str) {
        if let Ok(mut st) = self.state.lock() {
            st.failed_unlocks.remove(token);
            if let Some(s) = st.sessions.close(token) {
                self.emit(
                    vec![],
                    &s.username,
                    "session.logout",
                    None,
                    serde_json::json!({}),
                );
            }
        }
    }

    pub fn touch(&self, token: &str, now_ms: i64) {
        if let Ok(mut st) = self.state.lock() {
            self.poll(&mut st, now_ms);
            st.sessions.touch(token, now_ms);
        }
    }

    pub fn session(&self, token: &str, now_ms: i64) -> Option<Session> {
        let mut st = self.state.lock().ok()?;
        self.poll(&mut st, now_ms);
        st.sessions.peek(token, now_ms).cloned()
    }

    /// The session behind `token` if it may do `action`; otherwise the denial, audited.
    pub fn authorize(
        &self,
        token: &str,
        action: &Action,
        now_ms: i64,
    ) -> Result<Session, AccessError> {
        let mut st = self.lock_state()?;
        self.poll(&mut st, now_ms);
        let who = st
            .sessions
            .peek(token, now_ms)
            .map(|s| s.username.clone())
            .unwrap_or_else(|| "(not signed in)".into());
        let session = match st.sessions.active(token, now_ms) {
            Ok(s) => s,
            Err(d) => return Err(self.deny(&who, action.name(), action.bed(), d)),
        };
        let empty = BTreeSet::new();
        let beds = st.beds.get(&session.username).unwrap_or(&empty);
        match access::authorize(session.role, beds, &self.policy, action) {
            Ok(()) => Ok(session),
            Err(d) => Err(self.deny(&who, action.name(), action.bed(), d)),
        }
    }

    /// Assigns a nurse to beds (replacing their previous beds). `known_beds` are the unit's.
    pub fn assign(
        &self,
        token: &str,
        nurse: &str,
        beds: &[String],
        known_beds: &BTreeSet<String>,
        now_ms: i64,
    ) -> Result<(), AccessError> {
        let by = self.authorize(token, &Action::AssignBeds, now_ms)?;
        let mut st = self.lock_state()?;
        let bad = |reason: String| AccessError::Invalid {
            code: ErrorCode::BadAssignment,
            reason,
        };
        let row = self
            .lookup(&mut st, nurse)
            .ok_or_else(|| bad(format!("there is no user {nurse:?}")))?;
        if role_of(&row) != Role::Nurse {
            return Err(bad(format!(
                "{nurse} is not a nurse; only nurses are assigned beds"
            )));
        }
        if let Some(b) = beds.iter().find(|b| !known_beds.contains(*b)) {
            return Err(bad(format!("there is no bed {b:?} in this unit")));
        }
        let set: BTreeSet<String> = beds.iter().cloned().collect();
        st.beds.insert(nurse.to_string(), set.clone());
        self.emit(
            vec![Record::Assignment {
                username: nurse.to_string(),
                beds: set.iter().cloned().collect(),
                t_ms: now_ms,
                by: by.username.clone(),
            }],
            &by.username,
            "beds.assigned",
            None,
            serde_json::json!({"nurse": nurse, "beds": set}),
        );
        Ok(())
    }

    /// Creates or changes a user (IT administrators). Disabling a user or changing their
    /// role ends their sessions.
    pub fn change_user(
        &self,
        token: &str,
        change: &UserChange,
        now_ms: i64,
    ) -> Result<UserView, AccessError> {
        let by = self.authorize(token, &Action::ManageUsers, now_ms)?;
        let mut st = self.lock_state()?;
        let existing = self.lookup(&mut st, &change.username);
        let (row, kind, detail) = apply_change(existing.as_ref(), change, &by.username, now_ms)?;
        if existing.as_ref().is_some_and(|old| {
            row.disabled || old.role != row.role || old.secret_hash != row.secret_hash
        }) {
            st.sessions.close_user(&row.username);
        }
        st.users.insert(row.username.clone(), row.clone());
        let empty = BTreeSet::new();
        let v = view(&row, st.beds.get(&row.username).unwrap_or(&empty));
        self.emit(vec![Record::User(row)], &by.username, kind, None, detail);
        Ok(v)
    }

    pub fn users(&self) -> Vec<UserView> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        let empty = BTreeSet::new();
        st.users
            .values()
            .map(|u| view(u, st.beds.get(&u.username).unwrap_or(&empty)))
            .collect()
    }
}
