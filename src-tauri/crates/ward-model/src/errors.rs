//! The stable codes of every error a person or a program can get back from the station: the
//! window branches on them, the audit trail records them, scripts match them. One enum, so a
//! code is a type and not a string literal typed again on the other side; the TypeScript
//! union the window uses is generated from it (`ui/src/gen/ErrorCode.ts`, by ts-rs in this
//! crate's tests with the `ts` feature; `make lint` fails when it is stale).
//!
//! Each code has a [`ErrorKind`]: a *denial* is a person who may not do this (audited), a
//! *validation* error is a request that cannot be done as asked (bad input, unknown bed), and
//! a *fault* is the station's own trouble (storage, the alarm driver, a credential store).

use serde::{Deserialize, Serialize};

/// What kind of refusal a code is (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Denied,
    Invalid,
    Fault,
}

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $kind:ident;)+) => {
        /// A stable, snake_case error code (see the module docs).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "ErrorCode.ts"))]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code as written on the wire and in the audit trail.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            pub fn kind(self) -> ErrorKind {
                match self {
                    $(ErrorCode::$variant => ErrorKind::$kind,)+
                }
            }
        }
    };
}

error_codes! {
    // Denials: who may act (ward-access).
    /// No one is signed in at this window.
    NotSignedIn = "not_signed_in", Denied;
    /// The session is locked; PIN or password unlocks it.
    Locked = "locked", Denied;
    /// The session ended (too many failed unlocks, user disabled).
    SessionEnded = "session_ended", Denied;
    /// Wrong user name, password or PIN (one message for all, audited).
    BadCredentials = "bad_credentials", Denied;
    /// The role does not allow the action.
    NotPermitted = "not_permitted", Denied;
    /// A view-only account.
    ViewOnly = "view_only", Denied;
    /// The bed is not assigned to this nurse.
    NotAssigned = "not_assigned", Denied;

    // Validation: what was asked cannot be done as asked.
    BadUsername = "bad_username", Invalid;
    BadName = "bad_name", Invalid;
    WeakPassword = "weak_password", Invalid;
    BadPin = "bad_pin", Invalid;
    EmptyPassword = "empty_password", Invalid;
    MissingRole = "missing_role", Invalid;
    MissingPassword = "missing_password", Invalid;
    BadAssignment = "bad_assignment", Invalid;
    BadDevice = "bad_device", Invalid;
    BadAdmission = "bad_admission", Invalid;
    UnknownBed = "unknown_bed", Invalid;
    UnknownAlarm = "unknown_alarm", Invalid;
    AlreadyAcknowledged = "already_acknowledged", Invalid;
    InvalidRule = "invalid_rule", Invalid;
    /// The alarm engine refused an action with no user behind it.
    NoUser = "no_user", Invalid;
    /// The alarm policy does not allow it (audio off where the hospital forbids it).
    NotAllowed = "not_allowed", Invalid;
    /// A review or export window that cannot be answered as asked.
    BadRequest = "bad_request", Invalid;
    /// The configuration names a bad value (file, key, reason in the message).
    Config = "config", Invalid;

    // Faults: the station's own trouble.
    AlarmDriver = "alarm_driver", Fault;
    Store = "store", Fault;
    Export = "export", Fault;
    CredentialStore = "credential_store", Fault;
    Broker = "broker", Fault;
    /// A station part could not start or its state is unusable (a poisoned lock).
    Internal = "internal", Fault;
    /// The station is shutting down; the window's command came too late.
    StationStopped = "station_stopped", Fault;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets tests and callers compare a code with its written form.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_is_the_serialized_code() {
        for c in ErrorCode::ALL {
            let json = serde_json::to_string(c).expect("serialize");
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, *c);
        }
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
        }
    }
}
