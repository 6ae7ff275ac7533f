//! Newtypes for the ids that cross the wire and the config.

use crate::ModelError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Characters allowed in ids: they become MQTT topic levels and SQLite keys, so no wildcards,
/// no separators, nothing that needs quoting in a log line.
fn check_id(id: &str) -> Result<(), ModelError> {
    let bad = |reason| {
        Err(ModelError::InvalidId {
            id: id.chars().take(80).collect(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > 64 {
        return bad("longer than 64 bytes");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return bad("only ASCII letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Result<Self, ModelError> {
                let id = id.into();
                check_id(&id)?;
                Ok(Self(id))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = ModelError;
            fn try_from(s: String) -> Result<Self, ModelError> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// The identity a bedside monitor publishes under (its MQTT topic level).
    DeviceId
);
id_type!(
    /// A bed of the unit. The station keeps which device is at which bed.
    BedId
);
id_type!(
    /// A station user's login name. Same character rules as the other ids: it goes into the
    /// audit trail, log lines and the hospital core's topics unquoted.
    Username
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_rejects_topic_syntax() {
        assert_eq!(DeviceId::new("mon-03").unwrap().as_str(), "mon-03");
        for bad in ["", "a/b", "a+b", "#", "bed 1", &"x".repeat(65)] {
            let err = DeviceId::new(bad).unwrap_err();
            assert_eq!(err.kind(), "invalid_id", "{bad:?}");
        }
    }

    #[test]
    fn serde_goes_through_validation() {
        let ok: BedId = serde_json::from_str("\"bed-1\"").unwrap();
        assert_eq!(ok.to_string(), "bed-1");
        assert!(serde_json::from_str::<BedId>("\"bed/1\"").is_err());
    }
}
