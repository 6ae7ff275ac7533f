//! ward-access: who may do what at the station. Users, sessions at windows, nurses' bed
//! assignments, and every permission decision, with each login, lock, action and denial
//! audited.
//!
//! What it is: the pure permission table and session clock (`policy`: time passed in, no
//! I/O) and the run-time directory around it (`staff`: users from the database, argon2
//! verification, audit events through the station's never-drop queue, a [`RecordSink`]).
//! What it is not: it runs no action. The caller asks [`Staff::authorize`] and then does the
//! thing (the alarm driver, the exporter); locking never hides the ward.
//!
//! Layout: `policy` (actions, the permission table, sessions, password rules and hashing),
//! `staff` (users, sessions and assignments at run time; offline user changes for the CLI).
//!
//! [`RecordSink`]: ward_store::RecordSink

mod error;
pub mod policy;
pub mod staff;

pub use policy::{authorize, Action, Denial, Session, Sessions};
pub use staff::{
    apply_change, change_user_offline, new_token, Staff, UserChange, UserView, DEMO_ACCOUNTS,
    DEMO_PASSWORD,
};

pub use error::AccessError;
