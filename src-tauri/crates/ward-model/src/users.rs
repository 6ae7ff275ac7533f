//! Station users' roles. Who may do what with each role is decided in ward-core's `access`
//! module; this is only the vocabulary shared by the store, the core and the window.

use crate::ModelError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The four roles of a unit's central station (issue 5). A user has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees everything, acts on nothing (ward clerks, physicians passing by, trainees).
    Viewer,
    /// Acknowledges and pauses alarms for the beds assigned to them.
    Nurse,
    /// Runs the unit: any alarm, limits, assignments, admitting devices to beds.
    ChargeNurse,
    /// Hospital IT: users (and, at the console, the upstream password). No clinical actions.
    ItAdmin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Nurse, Role::ChargeNurse, Role::ItAdmin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Nurse => "nurse",
            Role::ChargeNurse => "charge_nurse",
            Role::ItAdmin => "it_admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ModelError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ModelError::Role(s.chars().take(40).collect()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_by_name_and_refuse_others() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()).unwrap(), r);
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        let err = Role::parse("admin").unwrap_err();
        assert!(err.to_string().contains("not a role"), "{err}");
    }
}
