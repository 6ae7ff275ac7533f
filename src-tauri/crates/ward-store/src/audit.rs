//! The audit trail: an append-only, hash-chained table, which is also the outbox for the
//! hospital core.
//!
//! Each event carries the previous event's hash and its own, a SHA-256 over the previous
//! hash and every field, so [`verify`] finds an edited, deleted or reordered event and says
//! where. Triggers refuse UPDATE and DELETE, so the station cannot change history by
//! accident; someone with the file can drop them, and then `verify` is what catches it.
//!
//! Outbox: events are synced upstream in `seq` order, so "what is not yet synced" is one
//! watermark per upstream (`sync_state.acked_seq`), written in the same store as the events.
//! An event is in the outbox from the transaction that appends it, by construction.

use crate::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The hash the first event links to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An event to append; the store gives it its sequence number, id and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// The station the event happened at; with `seq` it makes the stable event id.
    pub origin: String,
    pub t_ms: i64,
    /// Who: a user, a device id, or "system".
    pub actor: String,
    /// What, dotted: `alarm.raised`, `alarm.acknowledged`, `device.offline`, `station.start`.
    pub kind: String,
    pub bed: Option<String>,
    /// JSON object with the particulars.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub event_id: String,
    pub t_ms: i64,
    pub actor: String,
    pub kind: String,
    pub bed: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 over a JSON array of the previous hash and every field of `r` (its own `hash`
/// aside): unambiguous (no field can run into the next) and easy to recompute with any
/// language's JSON library.
pub fn chain_hash(r: &AuditRow) -> String {
    let canonical = serde_json::json!([
        r.prev_hash,
        r.seq,
        r.event_id,
        r.t_ms,
        r.actor,
        r.kind,
        r.bed,
        r.detail
    ])
    .to_string();
    hex(&Sha256::digest(canonical.as_bytes()))
}

/// Appends events inside the writer's transaction, continuing the chain from the last event.
/// An event about a bed names the bed's patient (the patient line, from the admission history
/// as it is when the event is written) unless it already does: the trail, and the hospital
/// core it reaches, say who an alarm or an acknowledgement was about.
fn with_patient(
    q: &mut rusqlite::CachedStatement<'_>,
    e: &AuditEvent,
) -> Result<String, StoreError> {
    let Some(bed) = &e.bed else {
        return Ok(e.detail.clone());
    };
    let Ok(serde_json::Value::Object(mut d)) = serde_json::from_str(&e.detail) else {
        return Ok(e.detail.clone());
    };
    // Alarm events carry the log row, whose `patient` the engine leaves null.
    if d.get("patient").is_some_and(|p| !p.is_null()) {
        return Ok(e.detail.clone());
    }
    let json: Option<String> = q.query_row(params![bed], |r| r.get(0)).optional()?;
    let Some(line) = json
        .and_then(|j| serde_json::from_str::<ward_model::Patient>(&j).ok())
        .map(|p| p.line())
    else {
        return Ok(e.detail.clone());
    };
    d.insert("patient".into(), line.into());
    Ok(serde_json::Value::Object(d).to_string())
}

pub(crate) fn append(tx: &Transaction<'_>, events: &[&AuditEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (mut seq, mut prev) = last.unwrap_or((0, GENESIS.to_string()));
    let mut ins = tx.prepare_cached(
        "INSERT INTO audit (seq, event_id, t_ms, actor, kind, bed, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut patient = tx.prepare_cached(
        "SELECT patient FROM admissions WHERE bed = ?1 AND to_ms IS NULL ORDER BY from_ms DESC LIMIT 1",
    )?;
    for e in events {
        seq += 1;
        let mut r = AuditRow {
            seq,
            event_id: format!("{}:{seq}", e.origin),
            t_ms: e.t_ms,
            actor: e.actor.clone(),
            kind: e.kind.clone(),
            bed: e.bed.clone(),
            detail: with_patient(&mut patient, e)?,
            prev_hash: prev,
            hash: String::new(),
        };
        r.hash = chain_hash(&r);
        ins.execute(params![
            r.seq,
            r.event_id,
            r.t_ms,
            r.actor,
            r.kind,
            r.bed,
            r.detail,
            r.prev_hash,
            r.hash
        ])?;
        prev = r.hash;
    }
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        seq: r.get(0)?,
        event_id: r.get(1)?,
        t_ms: r.get(2)?,
        actor: r.get(3)?,
        kind: r.get(4)?,
        bed: r.get(5)?,
        detail: r.get(6)?,
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
    })
}

const COLUMNS: &str = "seq, event_id, t_ms, actor, kind, bed, detail, prev_hash, hash";

/// Events with `seq > after`, oldest first, at most `limit`.
pub(crate) fn after(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<AuditRow>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let rows = st.query_map(params![after, limit as i64], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn last_seq(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |r| r.get(0))?)
}

pub(crate) fn acked(conn: &Connection, upstream: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_row(
            "SELECT acked_seq FROM sync_state WHERE upstream = ?1",
            params![upstream],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// What `verify` found: the number of events checked and every problem, each naming the
/// position (seq) where the chain stops being what was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub events: u64,
    pub problems: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Walks the chain from the first event. Finds edited events (their hash no longer matches),
/// deleted ones (a gap in `seq`, or a broken link), reordered ones (broken links), and a cut
/// end (the upstream watermark is past the last event).
pub fn verify(conn: &Connection) -> Result<Verification, StoreError> {
    let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY seq"))?;
    let mut rows = st.query([])?;
    let mut problems = Vec::new();
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_string();
    let mut events = 0;
    while let Some(r) = rows.next()? {
        let a = row(r)?;
        events += 1;
        if a.seq != expected_seq {
            problems.push(format!(
                "event {}: missing before it (expected seq {expected_seq}); events were deleted",
                a.seq
            ));
        }
        if a.prev_hash != prev {
            problems.push(format!(
                "event {}: does not link to the event before it; an earlier event was edited, deleted or moved",
                a.seq
            ));
        }
        if chain_hash(&a) != a.hash {
            problems.push(format!(
                "event {} ({}): its contents were changed after it was written",
                a.seq, a.event_id
            ));
        } else if a.event_id.rsplit(':').next() != Some(a.seq.to_string().as_str()) {
            problems.push(format!(
                "event {}: carries the id of another position ({})",
                a.seq, a.event_id
            ));
        }
        expected_seq = a.seq + 1;
        prev = a.hash;
    }
    let mut st = conn.prepare("SELECT upstream, acked_seq FROM sync_state")?;
    let acked = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for a in acked {
        let (up, seq) = a?;
        if seq >= expected_seq {
            problems.push(format!(
                "events after {} are missing: upstream {up} already acknowledged up to {seq}",
                expected_seq - 1
            ));
        }
    }
    Ok(Verification { events, problems })
}

/// Every event, oldest first (for export).
pub fn all(conn: &Connection) -> Result<Vec<AuditRow>, StoreError> {
    after(conn, 0, usize::MAX >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Record, Store};

    fn store_with(n: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let events: Vec<Record> = (0..n)
            .map(|i| {
                Record::Audit(AuditEvent {
                    origin: "st-1".into(),
                    t_ms: 1_000 + i as i64,
                    actor: if i % 2 == 0 { "system" } else { "nurse.ana" }.into(),
                    kind: "alarm.raised".into(),
                    bed: Some(format!("bed-0{}", i % 3 + 1)),
                    detail: format!(r#"{{"n":{i}}}"#),
                })
            })
            .collect();
        // Two batches: the chain continues across transactions.
        s.write_batch(&events[..n / 2]).unwrap();
        s.write_batch(&events[n / 2..]).unwrap();
        (dir, s)
    }

    /// What someone with the file and sqlite3 would do: drop the guards, then edit.
    fn tamper(s: &Store, sql: &str) {
        s.conn
            .execute_batch(&format!(
                "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete; {sql}"
            ))
            .unwrap();
    }

    #[test]
    fn an_untouched_chain_verifies_and_ids_are_stable() {
        let (_d, s) = store_with(10);
        let v = s.verify_audit().unwrap();
        assert!(v.ok(), "{v:?}");
        assert_eq!(v.events, 10);
        let all = s.audit_all().unwrap();
        assert_eq!(all[0].prev_hash, GENESIS);
        assert_eq!(all[3].event_id, "st-1:4");
        assert_eq!(all[4].prev_hash, all[3].hash);
        assert_eq!(s.audit_after(7, 100).unwrap().len(), 3);
        assert_eq!(s.audit_last_seq().unwrap(), 10);
    }

    #[test]
    fn the_station_itself_cannot_update_or_delete_events() {
        let (_d, s) = store_with(3);
        let e = s
            .conn
            .execute("UPDATE audit SET actor = 'x' WHERE seq = 2", [])
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        assert!(s
            .conn
            .execute("DELETE FROM audit WHERE seq = 2", [])
            .is_err());
    }

    #[test]
    fn an_edited_event_is_found_at_its_position() {
        let (_d, s) = store_with(10);
        tamper(&s, "UPDATE audit SET actor = 'nurse.eve' WHERE seq = 6;");
        let v = s.verify_audit().unwrap();
        assert_eq!(v.problems.len(), 1, "{v:?}");
        assert!(
            v.problems[0].starts_with("event 6 (st-1:6): its contents were changed"),
            "{v:?}"
        );
    }

    #[test]
    fn an_edit_that_also_recomputes_the_hash_breaks_the_next_link() {
        let (_d, s) = store_with(10);
        let all = s.audit_all().unwrap();
        let mut a = all[4].clone();
        a.actor = "nurse.eve".into();
        let forged = chain_hash(&a);
        tamper(
            &s,
            &format!("UPDATE audit SET actor = 'nurse.eve', hash = '{forged}' WHERE seq = 5;"),
        );
        let v = s.verify_audit().unwrap();
        assert_eq!(v.problems.len(), 1, "{v:?}");
        assert!(v.problems[0].starts_with("event 6: does not link"), "{v:?}");
    }

    #[test]
    fn a_deleted_event_is_found_where_it_was() {
        let (_d, s) = store_with(10);
        tamper(&s, "DELETE FROM audit WHERE seq = 4;");
        let v = s.verify_audit().unwrap();
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("event 5: missing before it (expected seq 4)")),
            "{v:?}"
        );
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("event 5: does not link")),
            "{v:?}"
        );
        // The first event too.
        let (_d, s) = store_with(3);
        tamper(&s, "DELETE FROM audit WHERE seq = 1;");
        assert!(s.verify_audit().unwrap().problems[0]
            .starts_with("event 2: missing before it (expected seq 1)"));
    }

    #[test]
    fn swapped_events_are_found() {
        let (_d, s) = store_with(10);
        // Exchange the contents of events 3 and 7 (each keeps its position).
        tamper(
            &s,
            "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN (3, 7);
             UPDATE audit SET event_id = 'swap-' || seq WHERE seq IN (3, 7);
             UPDATE audit SET (t_ms, actor, kind, bed, detail, prev_hash, hash) =
               (SELECT t_ms, actor, kind, bed, detail, prev_hash, hash FROM t WHERE t.seq = 10 - audit.seq)
               WHERE seq IN (3, 7);
             UPDATE audit SET event_id = (SELECT event_id FROM t WHERE t.seq = 10 - audit.seq)
               WHERE seq IN (3, 7);",
        );
        let v = s.verify_audit().unwrap();
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("event 3: does not link")),
            "{v:?}"
        );
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("event 3 (st-1:7): its contents were changed")),
            "{v:?}"
        );
        assert!(!v.ok());
    }

    #[test]
    fn a_cut_end_is_found_through_the_upstream_watermark() {
        let (_d, mut s) = store_with(10);
        s.write_batch(&[Record::SyncAck {
            upstream: "core".into(),
            seq: 9,
            t_ms: 5,
        }])
        .unwrap();
        assert_eq!(s.sync_acked("core").unwrap(), 9);
        // A watermark never goes back.
        s.write_batch(&[Record::SyncAck {
            upstream: "core".into(),
            seq: 4,
            t_ms: 6,
        }])
        .unwrap();
        assert_eq!(s.sync_acked("core").unwrap(), 9);
        assert!(s.verify_audit().unwrap().ok());
        tamper(&s, "DELETE FROM audit WHERE seq >= 8;");
        let v = s.verify_audit().unwrap();
        assert_eq!(
            v.problems,
            ["events after 7 are missing: upstream core already acknowledged up to 9"]
        );
    }
}
