//! Users, sessions and permissions, decided here in the core so that no window, script or
//! future API can act beyond its role.
//!
//! The decisions are pure: [`authorize`] maps (role, the user's beds, policy, action) to
//! allowed or a [`Denial`] with a stable code and a sentence a nurse can read, and
//! [`Sessions`] takes the time as an argument (auto-lock is a timeout, not a timer thread).
//! The station wraps both in `StationHandle` methods that look users up in the database,
//! verify argon2 hashes and audit every login, lock, action and denial.
//!
//! Locking never hides the ward: a locked or logged-out window still shows every bed and
//! every alarm, and the alarm sound does not depend on anyone being logged in. Only actions
//! need a person.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use ward_alarm::AlarmCommand;
use ward_config::AccessPolicy;
use ward_model::{ErrorCode, Role};

/// Something a user asks the station to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// An action on alarms, as the alarm driver will run it. `bed` is the bed it touches:
    /// the command's own, or for an acknowledgement the alarm's (looked up by the caller;
    /// `None` is a station-level technical alarm, or the whole unit for pauses).
    Alarm {
        command: AlarmCommand,
        bed: Option<String>,
    },
    AssignBeds,
    AdmitDischarge,
    ManageUsers,
    /// Writing a bed's strip or trend report to a file: patient data leaving the screen, so
    /// clinical staff only, and audited.
    Export {
        bed: String,
    },
    /// Acknowledging, from here, an alarm of a followed station (a care group). The bed is
    /// that station's; following it is the unit's decision, so no assignment is asked.
    AcknowledgeFollowed {
        station: String,
        bed: String,
    },
    /// The unit's alarm statistics and limit review (Unit statistics): how the unit's
    /// alarms behave, for the clinical staff who answer them. Applying a suggestion is
    /// `SetRules`, with its own permission.
    UnitStatistics,
}

impl Action {
    /// An alarm command; `alarm_bed` is the acknowledged alarm's bed (ignored otherwise).
    pub fn alarm(command: AlarmCommand, alarm_bed: Option<String>) -> Self {
        let bed = match &command {
            AlarmCommand::Acknowledge { .. } => alarm_bed,
            c => c.bed().map(str::to_string),
        };
        Action::Alarm { command, bed }
    }

    /// Stable name for the audit trail and the denial message.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Alarm { command, .. } => command.name(),
            Action::AssignBeds => "assign_beds",
            Action::AdmitDischarge => "admit_discharge",
            Action::ManageUsers => "manage_users",
            Action::Export { .. } => "export",
            Action::AcknowledgeFollowed { .. } => "acknowledge_followed",
            Action::UnitStatistics => "unit_statistics",
        }
    }

    pub fn bed(&self) -> Option<&str> {
        match self {
            Action::Alarm { bed, .. } => bed.as_deref(),
            Action::Export { bed } | Action::AcknowledgeFollowed { bed, .. } => Some(bed),
            _ => None,
        }
    }
}

/// Why the station refused. `code` is stable for the window to branch on; `reason` is shown
/// to the user and written to the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    pub code: ErrorCode,
    pub reason: String,
}

impl Denial {
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// The permission table. `beds` are the beds assigned to this user (nurses only).
pub fn authorize(
    role: Role,
    beds: &BTreeSet<String>,
    policy: &AccessPolicy,
    action: &Action,
) -> Result<(), Denial> {
    let clinical = !matches!(action, Action::ManageUsers);
    let not_role = |who: &str| {
        Err(Denial::new(
            ErrorCode::NotPermitted,
            format!(
                "{} is for {who}; you are signed in as {}",
                describe(action),
                role_name(role)
            ),
        ))
    };
    if let Action::Alarm {
        command: AlarmCommand::PeerAcknowledge { .. },
        ..
    } = action
    {
        // Another station's acknowledgement arrives through the hospital core with its
        // user named there; no window session may claim one.
        return Err(Denial::new(
            ErrorCode::NotPermitted,
            "acknowledgements from other stations arrive only through the hospital core",
        ));
    }
    match role {
        Role::Viewer => Err(Denial::new(ErrorCode::ViewOnly,
            format!("{} is not possible with a view-only account", describe(action)),
        )),
        Role::ItAdmin if clinical => not_role("clinical staff"),
        Role::ItAdmin => Ok(()),
        Role::ChargeNurse if clinical => Ok(()),
        Role::ChargeNurse => not_role("IT administrators"),
        Role::Nurse => match action {
            // Audio off silences without end: the charge nurse's decision, where policy
            // allows it at all.
            Action::Alarm {
                command:
                    AlarmCommand::AudioOff { .. }
                    | AlarmCommand::SetRules { .. }
                    | AlarmCommand::Monitor { .. },
                ..
            } => not_role("charge nurses"),
            Action::AssignBeds | Action::AdmitDischarge => not_role("charge nurses"),
            Action::ManageUsers => not_role("IT administrators"),
            // Every bed is on her screen; printing what she sees needs no assignment.
            Action::Export { .. } => Ok(()),
            // The care group is followed by the unit's decision (config), not by assignment.
            Action::AcknowledgeFollowed { .. } => Ok(()),
            // The unit's alarm burden is every nurse's business; changing a limit is not.
            Action::UnitStatistics => Ok(()),
            // A station-level technical alarm (audio, storage) concerns everyone on shift.
            Action::Alarm {
                command: AlarmCommand::Acknowledge { .. },
                bed: None,
            } => Ok(()),
            _ if policy.nurses_all_beds => Ok(()),
            Action::Alarm {
                command: AlarmCommand::AudioPause { bed: None },
                ..
            } => Err(Denial::new(ErrorCode::NotAssigned,
                "pausing the audio of the whole unit is for charge nurses (you have assigned beds only)",
            )),
            _ => {
                let bed = action.bed().unwrap_or_default();
                if beds.contains(bed) {
                    Ok(())
                } else {
                    Err(Denial::new(ErrorCode::NotAssigned,
                        format!(
                            "bed {bed} is not assigned to you (your beds: {})",
                            if beds.is_empty() {
                                "none".to_string()
                            } else {
                                beds.iter().cloned().collect::<Vec<_>>().join(", ")
                            }
                        ),
                    ))
                }
            }
        },
    }
}

/// The action as the start of a sentence: "Changing alarm limits at bed 9".
fn describe(action: &Action) -> String {
    let what = match action {
        Action::Alarm { command, .. } => match command {
            AlarmCommand::Acknowledge { .. } => "Acknowledging alarms",
            AlarmCommand::AudioPause { .. } => "Pausing alarm audio",
            AlarmCommand::AlarmPause { .. } => "Pausing alarms",
            AlarmCommand::AudioOff { .. } => "Turning alarm audio off",
            AlarmCommand::SetRules { .. } => "Changing alarm limits",
            AlarmCommand::Monitor { .. } => "Admitting and discharging devices",
            AlarmCommand::PeerAcknowledge { .. } => "Acknowledging for another station",
        },
        Action::AssignBeds => "Assigning nurses to beds",
        Action::AdmitDischarge => "Admitting and discharging devices",
        Action::ManageUsers => "Managing users",
        Action::Export { .. } => "Exporting strips and reports",
        Action::AcknowledgeFollowed { .. } => "Acknowledging another station's alarms",
        Action::UnitStatistics => "Viewing the unit's alarm statistics",
    };
    match action.bed() {
        Some(b) => format!("{what} at bed {b}"),
        None => what.to_string(),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Viewer => "a viewer",
        Role::Nurse => "a nurse",
        Role::ChargeNurse => "a charge nurse",
        Role::ItAdmin => "an IT administrator",
    }
}

/// A signed-in user at a window. The token is what the shell holds; the window never sees
/// it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Session {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub started_ms: i64,
    pub last_active_ms: i64,
    pub locked: bool,
    /// The user has a PIN, so the window may offer quick unlock.
    pub has_pin: bool,
}

/// Open sessions, with auto-lock by inactivity decided on the time passed in.
#[derive(Debug, Default)]
pub struct Sessions {
    by_token: HashMap<String, Session>,
    auto_lock_ms: i64,
}

impl Sessions {
    pub fn new(auto_lock_ms: i64) -> Self {
        Self {
            by_token: HashMap::new(),
            auto_lock_ms,
        }
    }

    pub fn open(&mut self, token: String, session: Session) {
        self.by_token.insert(token, session);
    }

    /// Locks sessions idle for the auto-lock time; returns the users newly locked (for the
    /// audit trail).
    pub fn poll(&mut self, now_ms: i64) -> Vec<String> {
        let mut locked = Vec::new();
        if self.auto_lock_ms <= 0 {
            return locked;
        }
        for s in self.by_token.values_mut() {
            if !s.locked && now_ms - s.last_active_ms >= self.auto_lock_ms {
                s.locked = true;
                locked.push(s.username.clone());
            }
        }
        locked
    }

    /// The session behind a token, if it exists (locked or not).
    pub fn peek(&mut self, token: &str, now_ms: i64) -> Option<&Session> {
        self.poll(now_ms);
        self.by_token.get(token)
    }

    /// The session for an action: it must exist and be unlocked. Counts as activity.
    pub fn active(&mut self, token: &str, now_ms: i64) -> Result<Session, Denial> {
        self.poll(now_ms);
        match self.by_token.get_mut(token) {
            None => Err(Denial::new(
                ErrorCode::NotSignedIn,
                "sign in to act on alarms (the ward stays visible without signing in)",
            )),
            Some(s) if s.locked => Err(Denial::new(
                ErrorCode::Locked,
                format!(
                    "the station is locked; {} unlocks with PIN or password",
                    s.display_name
                ),
            )),
            Some(s) => {
                s.last_active_ms = now_ms;
                Ok(s.clone())
            }
        }
    }

    /// Activity at the window (keys, pointer) keeps an unlocked session from locking.
    pub fn touch(&mut self, token: &str, now_ms: i64) {
        self.poll(now_ms);
        if let Some(s) = self.by_token.get_mut(token) {
            if !s.locked {
                s.last_active_ms = now_ms;
            }
        }
    }

    pub fn lock(&mut self, token: &str) -> Option<String> {
        let s = self.by_token.get_mut(token)?;
        (!s.locked).then(|| {
            s.locked = true;
            s.username.clone()
        })
    }

    pub fn unlock(&mut self, token: &str, now_ms: i64) -> Option<Session> {
        let s = self.by_token.get_mut(token)?;
        s.locked = false;
        s.last_active_ms = now_ms;
        Some(s.clone())
    }

    pub fn close(&mut self, token: &str) -> Option<Session> {
        self.by_token.remove(token)
    }

    /// Ends every session of a user (disabled, or their role changed).
    pub fn close_user(&mut self, username: &str) -> usize {
        let before = self.by_token.len();
        self.by_token.retain(|_, s| s.username != username);
        before - self.by_token.len()
    }
}

/// What makes an acceptable password or PIN. Checked before hashing, with the reason shown.
pub fn check_password(pw: &str) -> Result<(), Denial> {
    if pw.chars().count() < 8 {
        return Err(Denial::new(
            ErrorCode::WeakPassword,
            "a password needs at least 8 characters",
        ));
    }
    Ok(())
}

pub fn check_pin(pin: &str) -> Result<(), Denial> {
    if !(4..=8).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Denial::new(ErrorCode::BadPin, "a PIN is 4 to 8 digits"));
    }
    Ok(())
}

/// An argon2id hash (PHC string, random salt, the crate's default cost: 19 MiB, 2 passes).
pub fn hash_secret(secret: &str) -> Result<String, Denial> {
    Argon2::default()
        .hash_password(secret.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Denial::new(ErrorCode::Internal, format!("cannot hash the secret: {e}")))
}

/// Constant-time verification against a stored PHC string; an unreadable hash never matches.
pub fn verify_secret(phc: &str, secret: &str) -> bool {
    Argon2::default()
        .verify_password(secret.as_bytes(), phc)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beds(b: &[&str]) -> BTreeSet<String> {
        b.iter().map(|s| s.to_string()).collect()
    }

    fn all_actions(bed: &str) -> Vec<Action> {
        let b = Some(bed.to_string());
        let ack = AlarmCommand::Acknowledge { id: 1 };
        vec![
            Action::alarm(ack.clone(), b.clone()),
            Action::alarm(ack, None),
            Action::alarm(AlarmCommand::AudioPause { bed: b.clone() }, None),
            Action::alarm(AlarmCommand::AudioPause { bed: None }, None),
            Action::alarm(
                AlarmCommand::AlarmPause {
                    bed: bed.to_string(),
                },
                None,
            ),
            Action::alarm(AlarmCommand::AudioOff { bed: b }, None),
            Action::alarm(
                AlarmCommand::SetRules {
                    bed: bed.to_string(),
                    rules: vec![],
                },
                None,
            ),
            Action::AssignBeds,
            Action::AdmitDischarge,
            Action::ManageUsers,
            Action::Export {
                bed: bed.to_string(),
            },
            Action::UnitStatistics,
        ]
    }

    /// The whole permission table as text: one line per role and action, for the assigned
    /// bed 3 and the unassigned bed 9.
    fn table(policy: &AccessPolicy) -> String {
        let mut out = String::new();
        for role in Role::ALL {
            for bed in ["3", "9"] {
                for a in all_actions(bed) {
                    let verdict = match authorize(role, &beds(&["3"]), policy, &a) {
                        Ok(()) => "allowed".to_string(),
                        Err(d) => d.code.to_string(),
                    };
                    out.push_str(&format!(
                        "{:<12} {:<18} {:<5} {verdict}\n",
                        role.as_str(),
                        a.name(),
                        a.bed().unwrap_or("-")
                    ));
                }
            }
        }
        out
    }

    #[test]
    fn nurses_act_on_their_beds_only_and_never_on_limits() {
        let t = table(&AccessPolicy::default());
        let lines = |prefix: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.starts_with(prefix))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect()
        };
        let nurse = lines("nurse ");
        for expected in [
            "nurse acknowledge 3 allowed",
            "nurse acknowledge 9 not_assigned",
            "nurse acknowledge - allowed",
            "nurse audio_pause 3 allowed",
            "nurse audio_pause 9 not_assigned",
            "nurse audio_pause - not_assigned",
            "nurse alarm_pause 3 allowed",
            "nurse alarm_pause 9 not_assigned",
            "nurse audio_off 3 not_permitted",
            "nurse change_limits 3 not_permitted",
            "nurse assign_beds - not_permitted",
            "nurse admit_discharge - not_permitted",
            "nurse manage_users - not_permitted",
            "nurse export 3 allowed",
            "nurse export 9 allowed",
            "nurse unit_statistics - allowed",
        ] {
            assert!(nurse.contains(&expected.to_string()), "{expected}\n{t}");
        }
        assert!(
            lines("viewer").iter().all(|l| l.ends_with("view_only")),
            "{t}"
        );
        let charge = lines("charge_nurse");
        assert!(charge
            .iter()
            .filter(|l| !l.contains("manage_users"))
            .all(|l| l.ends_with("allowed")));
        assert!(charge.contains(&"charge_nurse manage_users - not_permitted".to_string()));
        let it = lines("it_admin");
        assert!(it.contains(&"it_admin manage_users - allowed".to_string()));
        assert!(it.contains(&"it_admin acknowledge 3 not_permitted".to_string()));
        assert!(it.contains(&"it_admin change_limits 3 not_permitted".to_string()));
        assert!(it.contains(&"it_admin export 9 not_permitted".to_string()));
        assert!(it.contains(&"it_admin unit_statistics - not_permitted".to_string()));
    }

    #[test]
    fn the_all_beds_policy_widens_nurses_to_the_unit_but_not_to_limits() {
        let p = AccessPolicy {
            nurses_all_beds: true,
            ..AccessPolicy::default()
        };
        let none = beds(&[]);
        for a in [
            Action::alarm(AlarmCommand::Acknowledge { id: 1 }, Some("9".into())),
            Action::alarm(AlarmCommand::AudioPause { bed: None }, None),
            Action::alarm(AlarmCommand::AlarmPause { bed: "9".into() }, None),
        ] {
            assert_eq!(authorize(Role::Nurse, &none, &p, &a), Ok(()), "{a:?}");
        }
        let d = authorize(
            Role::Nurse,
            &none,
            &p,
            &Action::alarm(
                AlarmCommand::SetRules {
                    bed: "9".into(),
                    rules: vec![],
                },
                None,
            ),
        )
        .unwrap_err();
        assert_eq!(d.code, "not_permitted");
        assert_eq!(
            d.reason,
            "Changing alarm limits at bed 9 is for charge nurses; you are signed in as a nurse"
        );
    }

    #[test]
    fn a_denial_names_the_bed_and_the_nurse_s_beds() {
        let d = authorize(
            Role::Nurse,
            &beds(&["3", "4"]),
            &AccessPolicy::default(),
            &Action::alarm(AlarmCommand::Acknowledge { id: 1 }, Some("9".into())),
        )
        .unwrap_err();
        assert_eq!(d.reason, "bed 9 is not assigned to you (your beds: 3, 4)");
    }

    #[test]
    fn no_window_session_may_send_a_peer_acknowledgement() {
        let peer = Action::alarm(
            AlarmCommand::PeerAcknowledge {
                bed: "3".into(),
                key: "limit:spo2_desat".into(),
                acked_at_ms: 0,
            },
            None,
        );
        for role in Role::ALL {
            let d = authorize(role, &beds(&["3"]), &AccessPolicy::default(), &peer).unwrap_err();
            assert_eq!(d.code, "not_permitted", "{role:?}");
        }
    }

    fn session(now: i64) -> Session {
        Session {
            username: "nurse.ana".into(),
            display_name: "Ana".into(),
            role: Role::Nurse,
            started_ms: now,
            last_active_ms: now,
            locked: false,
            has_pin: true,
        }
    }

    #[test]
    fn sessions_lock_after_inactivity_and_activity_postpones_it() {
        let mut s = Sessions::new(60_000);
        s.open("t".into(), session(0));
        assert!(s.active("t", 30_000).is_ok());
        s.touch("t", 80_000);
        assert_eq!(s.poll(139_999), Vec::<String>::new());
        assert_eq!(s.poll(140_000), vec!["nurse.ana".to_string()]);
        // Locked: reported once, refused with its own code, and touching does not unlock.
        assert_eq!(s.poll(200_000), Vec::<String>::new());
        s.touch("t", 200_000);
        assert_eq!(s.active("t", 200_001).unwrap_err().code, "locked");
        assert!(s.peek("t", 200_001).unwrap().locked);
        s.unlock("t", 210_000);
        assert!(s.active("t", 269_999).is_ok());
        assert_eq!(s.active("other", 0).unwrap_err().code, "not_signed_in");
    }

    #[test]
    fn zero_auto_lock_never_locks_and_closing_a_user_ends_their_sessions() {
        let mut s = Sessions::new(0);
        s.open("a".into(), session(0));
        s.open("b".into(), session(0));
        assert!(s.poll(i64::MAX / 2).is_empty());
        assert_eq!(s.lock("a"), Some("nurse.ana".into()));
        assert_eq!(s.lock("a"), None);
        assert_eq!(s.close_user("nurse.ana"), 2);
        assert!(s.peek("b", 1).is_none());
    }

    #[test]
    fn secrets_are_argon2id_and_checked_before_hashing() {
        let h = hash_secret("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_secret(&h, "correct horse"));
        assert!(!verify_secret(&h, "correct horsf"));
        assert!(!verify_secret("not a hash", "correct horse"));
        // Same secret, new salt.
        assert_ne!(hash_secret("correct horse").unwrap(), h);
        assert_eq!(check_password("short").unwrap_err().code, "weak_password");
        assert!(check_password("eight ch").is_ok());
        for bad in ["123", "123456789", "12a4", ""] {
            assert_eq!(check_pin(bad).unwrap_err().code, "bad_pin", "{bad:?}");
        }
        assert!(check_pin("0420").is_ok());
    }
}
