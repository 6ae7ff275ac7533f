//! The HL7 outbox: messages to the hospital's interface engine (PCD-01) and alarm manager
//! (PCD-04), kept until answered. Durable like the MQTT sync's outbox: a message is written
//! with its stable control id before anything is sent, resent until an answer arrives, and a
//! refusal (AE/AR) is kept for IT (`wardwatch hl7 failed`), never dropped.

use crate::{alarm_log_row, AlarmLogRow, Store, StoreError};
use rusqlite::{params, OptionalExtension};

/// A message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OutMessage {
    pub dest: String,
    pub bed: Option<String>,
    pub control_id: String,
    pub message: String,
    pub t_ms: i64,
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRow {
    pub id: i64,
    pub msg: OutMessage,
    /// pending, acked or failed.
    pub state: String,
    pub attempts: i64,
    /// The answer's code and text, once answered.
    pub answer: Option<String>,
}

fn out_row(r: &rusqlite::Row) -> rusqlite::Result<OutRow> {
    Ok(OutRow {
        id: r.get(0)?,
        msg: OutMessage {
            dest: r.get(1)?,
            bed: r.get(2)?,
            control_id: r.get(3)?,
            message: r.get(4)?,
            t_ms: r.get(5)?,
        },
        state: r.get(6)?,
        attempts: r.get(7)?,
        answer: r.get(8)?,
    })
}

const SELECT: &str =
    "SELECT id, dest, bed, control_id, message, t_ms, state, attempts, answer FROM hl7_outbox";

impl Store {
    /// Queues messages and moves a producer's cursor in one transaction: a crash leaves
    /// either both or neither, so nothing is queued twice and nothing is skipped.
    pub fn hl7_enqueue(
        &mut self,
        msgs: &[OutMessage],
        cursor: Option<(&str, i64)>,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO hl7_outbox (dest, bed, control_id, message, t_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for m in msgs {
                ins.execute(params![m.dest, m.bed, m.control_id, m.message, m.t_ms])?;
            }
            if let Some((name, value)) = cursor {
                tx.execute(
                    "INSERT INTO hl7_cursor (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    params![name, value],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn hl7_cursor(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM hl7_cursor WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The oldest unanswered message for `dest`: sending keeps the order of queueing.
    pub fn hl7_next(&self, dest: &str) -> Result<Option<OutRow>, StoreError> {
        let mut st = self.conn.prepare_cached(&format!(
            "{SELECT} WHERE dest = ?1 AND state = 'pending' ORDER BY id LIMIT 1"
        ))?;
        Ok(st.query_row(params![dest], out_row).optional()?)
    }

    /// Counts a send attempt.
    pub fn hl7_attempted(&self, id: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE hl7_outbox SET attempts = attempts + 1 WHERE id = ?1",
            params![id],
        )?;
        Ok(())
    }

    /// Records the answer: `acked`, or `failed` (kept for IT).
    pub fn hl7_answered(
        &self,
        id: i64,
        state: &str,
        answer: &str,
        t_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE hl7_outbox SET state = ?2, answer = ?3, answered_ms = ?4 WHERE id = ?1",
            params![id, state, answer, t_ms],
        )?;
        Ok(())
    }

    /// Messages by state (`failed` for IT; `None` for all), oldest first.
    pub fn hl7_messages(&self, state: Option<&str>) -> Result<Vec<OutRow>, StoreError> {
        let mut st = self.conn.prepare_cached(&format!(
            "{SELECT} WHERE (?1 IS NULL OR state = ?1) ORDER BY id"
        ))?;
        let rows = st.query_map(params![state], out_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Unanswered messages per destination.
    pub fn hl7_backlog(&self, dest: &str) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM hl7_outbox WHERE dest = ?1 AND state = 'pending'",
            params![dest],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// (unanswered, refused) messages for `dest`, in one indexed query: the link state the
    /// summary and the window show, read every second.
    pub fn hl7_counts(&self, dest: &str) -> Result<(u64, u64), StoreError> {
        let (pending, failed): (i64, i64) = self.conn.query_row(
            "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'failed'), 0)
             FROM hl7_outbox WHERE dest = ?1",
            params![dest],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((pending.max(0) as u64, failed.max(0) as u64))
    }

    /// Removes acknowledged messages answered before `before_ms` (failed ones stay).
    pub fn hl7_prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM hl7_outbox WHERE state = 'acked' AND answered_ms < ?1",
            params![before_ms],
        )?)
    }

    /// Alarm log rows after row `after`, oldest first, with their row ids (the PCD-04
    /// producer's cursor).
    pub fn alarm_log_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, AlarmLogRow)>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT t_ms, kind, alarm_id, bed, condition, label, priority, value, limit_value, user, detail, patient, id
             FROM alarm_log WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = st.query_map(params![after, limit as i64], |r| {
            Ok((r.get::<_, i64>(12)?, alarm_log_row(r)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest alarm log row id (0 when empty).
    pub fn alarm_log_last_id(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM alarm_log", [], |r| {
                r.get(0)
            })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> OutMessage {
        OutMessage {
            dest: "pcd04".into(),
            bed: Some("bed-01".into()),
            control_id: id.into(),
            message: format!("MSH|{id}"),
            t_ms: 1,
        }
    }

    #[test]
    fn queued_in_order_answered_and_kept_when_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("t.sqlite")).unwrap();
        s.hl7_enqueue(
            &[msg("a"), msg("b"), msg("c")],
            Some(("pcd04_alarm_log", 7)),
        )
        .unwrap();
        // The same control id again (a producer replaying after a crash) is not queued twice.
        s.hl7_enqueue(&[msg("a")], None).unwrap();
        assert_eq!(s.hl7_cursor("pcd04_alarm_log").unwrap(), Some(7));
        assert_eq!(s.hl7_backlog("pcd04").unwrap(), 3);
        let first = s.hl7_next("pcd04").unwrap().unwrap();
        assert_eq!(first.msg.control_id, "a");
        s.hl7_attempted(first.id).unwrap();
        s.hl7_answered(first.id, "acked", "AA", 10).unwrap();
        let second = s.hl7_next("pcd04").unwrap().unwrap();
        assert_eq!(second.msg.control_id, "b");
        s.hl7_answered(second.id, "failed", "AE bed unknown", 11)
            .unwrap();
        assert_eq!(s.hl7_next("pcd04").unwrap().unwrap().msg.control_id, "c");
        assert_eq!(s.hl7_next("pcd01").unwrap(), None);
        let failed = s.hl7_messages(Some("failed")).unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].answer.as_deref(), Some("AE bed unknown"));
        assert_eq!(s.hl7_counts("pcd04").unwrap(), (1, 1));
        assert_eq!(s.hl7_prune(100).unwrap(), 1, "only the acknowledged one");
        assert_eq!(s.hl7_messages(None).unwrap().len(), 2);
    }
}
