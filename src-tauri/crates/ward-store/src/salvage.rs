//! A damaged database: found at start-up, moved aside (never deleted), and what can still be
//! read copied into the new one (`wardwatch store salvage`).
//!
//! Damage is what SQLite's `quick_check` reports, or a file it cannot open or read at all
//! (a power cut on a disk that lies about flushing, a bad sector). The station then starts on
//! a new file and raises a HIGH technical alarm; monitoring never waits for a repair.
//!
//! Salvage reads each table in rowid order, a page of rows at a time; where a read fails it
//! skips forward (doubling the step) until rows read again, and counts the rowids it could
//! not read. The audit trail is copied, in order, only as far as its hash chain verifies: its
//! events go to `audit_salvaged` with their own chain (they cannot join the new file's).

use crate::audit::{chain_hash, AuditRow, GENESIS};
use crate::StoreError;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// What a database file is like before the station opens it.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Missing,
    Ok,
    /// Why SQLite refuses it (the open error, or `quick_check`'s first findings).
    Damaged(String),
}

/// Checks `path` without changing it (read-only; `quick_check` reads every page but skips
/// the slower index cross-checks of `integrity_check`).
pub fn check(path: &Path) -> Health {
    if !path.exists() {
        return Health::Missing;
    }
    let conn = match Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY) {
        Ok(c) => c,
        Err(e) => return Health::Damaged(format!("cannot be opened: {e}")),
    };
    let mut found = Vec::new();
    let r = conn.prepare("PRAGMA quick_check(5)").and_then(|mut st| {
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        for row in rows {
            found.push(row?);
        }
        Ok(())
    });
    match r {
        Err(e) => Health::Damaged(format!("cannot be read: {e}")),
        Ok(()) if found == ["ok"] => Health::Ok,
        Ok(()) => Health::Damaged(found.join("; ")),
    }
}

/// The cheap check made before the station starts: the file opens, its schema reads, and
/// every table's first and last rows read (the b-tree paths start-up and the writer touch
/// first). It reads a few pages per table whatever the file's size, so a 36 GB ward database
/// does not hold monitoring back; the full [`check`] runs after start-up, in the background.
pub fn check_opening(path: &Path) -> Health {
    if !path.exists() {
        return Health::Missing;
    }
    let conn = match Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY) {
        Ok(c) => c,
        Err(e) => return Health::Damaged(format!("cannot be opened: {e}")),
    };
    let tables = conn
        .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'table'")
        .and_then(|mut st| {
            st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        });
    let tables = match tables {
        Ok(t) => t,
        Err(e) => return Health::Damaged(format!("its schema cannot be read: {e}")),
    };
    for (name, sql) in tables {
        let without_rowid = sql.is_some_and(|s| s.to_ascii_uppercase().contains("WITHOUT ROWID"));
        let q = |order: &str| {
            if without_rowid {
                format!("SELECT * FROM \"{name}\" LIMIT 1")
            } else {
                format!("SELECT * FROM \"{name}\" ORDER BY rowid {order} LIMIT 1")
            }
        };
        for order in ["ASC", "DESC"] {
            let r = conn
                .prepare(&q(order))
                .and_then(|mut st| st.query([])?.next().map(|_| ()));
            if let Err(e) = r {
                return Health::Damaged(format!("table {name} cannot be read: {e}"));
            }
        }
    }
    Health::Ok
}

/// The file beside a database that says the background check found it damaged during a
/// run; the next start moves the database aside without checking it again.
pub fn marker_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.check-failed", path.display()))
}

/// Records that the full check found `path` damaged (the reason, for the next start).
pub fn mark_damaged(path: &Path, reason: &str) -> std::io::Result<()> {
    std::fs::write(marker_path(path), reason)
}

/// The reason a background check recorded for `path`, if one did; the marker is removed
/// (it has done its work once the next start reads it).
pub fn take_mark(path: &Path) -> Option<String> {
    let marker = marker_path(path);
    let reason = std::fs::read_to_string(&marker).ok()?;
    if let Err(e) = std::fs::remove_file(&marker) {
        tracing::warn!(marker = %marker.display(), error = %e, "cannot remove the damage marker");
    }
    Some(reason)
}

/// Renames `path` (and its `-wal` and `-shm` files, which belong to it) to
/// `<name>.damaged-<UTC time>`, and returns the new path. Nothing is deleted.
pub fn move_aside(path: &Path, t_ms: i64) -> std::io::Result<PathBuf> {
    let stamp = chrono::DateTime::from_timestamp_millis(t_ms)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|| t_ms.to_string());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut target = path.with_file_name(format!("{name}.damaged-{stamp}"));
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = path.with_file_name(format!("{name}.damaged-{stamp}-{n}"));
    }
    std::fs::rename(path, &target)?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            std::fs::rename(&side, format!("{}{suffix}", target.display()))?;
        }
    }
    Ok(target)
}

/// One table's salvage: rows copied, rowids that could not be read.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TableSalvage {
    pub table: String,
    pub copied: u64,
    pub unreadable: u64,
    /// The table itself could not be read at all.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SalvageReport {
    pub source: String,
    pub tables: Vec<TableSalvage>,
    /// Audit events copied (their chain verified from the first event).
    pub audit_verified: u64,
    /// Why the audit copy stopped before the end, if it did.
    pub audit_stopped: Option<String>,
}

/// Tables copied, and whether their integer key is kept (state keyed by name) or given
/// anew (logs appended to what the new file already has).
const TABLES: &[(&str, bool)] = &[
    ("users", true),
    ("bed_assignments", true),
    ("bed_devices", true),
    ("bed_rules", true),
    ("census", true),
    ("admissions", false),
    ("alarm_log", false),
    ("device_events", false),
    ("vitals", false),
    ("wave_chunks", false),
];

const PAGE: i64 = 500;

fn columns(conn: &Connection, db: &str, table: &str) -> rusqlite::Result<Vec<(String, bool)>> {
    let mut st = conn.prepare(&format!("PRAGMA {db}.table_info({table})"))?;
    let cols = st.query_map([], |r| {
        Ok((r.get::<_, String>(1)?, r.get::<_, i64>(5)? > 0))
    })?;
    cols.collect()
}

/// Reads `table` of `old` in rowid order, handing each readable row to `each`; returns the
/// number of rowids skipped as unreadable.
///
/// Rows are read a page of [`PAGE`] at a time; a page that fails is read again a row at a
/// time up to the damage, and past a row that cannot be read the scan skips forward
/// (doubling the step) until a whole row reads again. Every step moves `after` forward, so
/// the scan ends whatever the damage (a damaged page can even yield keys out of order: a key
/// at or below `after` counts as a failed read).
fn scan(
    old: &Connection,
    table: &str,
    cols: &[String],
    mut each: impl FnMut(Vec<Value>) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let list = cols.join(", ");
    let last_rowid: Option<i64> = old
        .query_row(&format!("SELECT max(rowid) FROM {table}"), [], |r| r.get(0))
        .ok()
        .flatten();
    let read = |after: i64, limit: i64| -> rusqlite::Result<Vec<(i64, Vec<Value>)>> {
        let sql = format!(
            "SELECT rowid, {list} FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT {limit}"
        );
        let rows: Vec<(i64, Vec<Value>)> = old.prepare(&sql).and_then(|mut st| {
            let rows = st.query_map([after], |r| {
                let id: i64 = r.get(0)?;
                let vals = (1..=cols.len())
                    .map(|i| r.get::<_, Value>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((id, vals))
            })?;
            rows.collect()
        })?;
        let mut prev = after;
        for (id, _) in &rows {
            if *id <= prev {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                    Some(format!("rowid {id} out of order after {prev}")),
                ));
            }
            prev = *id;
        }
        Ok(rows)
    };
    let mut after = i64::MIN;
    let mut unreadable = 0u64;
    loop {
        let rows = match read(after, PAGE).or_else(|_| read(after, 1)) {
            Ok(rows) => rows,
            Err(_) => {
                // The next row cannot be read: skip forward past the damage, a little
                // further each time, to the first key from which a whole row reads again.
                let from = after;
                let mut step = 1i64;
                loop {
                    let probe = from.saturating_add(step);
                    match read(probe, 1) {
                        Ok(_) => {
                            after = probe;
                            break;
                        }
                        Err(_) if last_rowid.is_some_and(|m| probe >= m) || probe == i64::MAX => {
                            after = i64::MAX;
                            break;
                        }
                        Err(_) => step = step.saturating_mul(2),
                    }
                }
                let skipped_to = after.min(last_rowid.unwrap_or(after));
                unreadable += (skipped_to.saturating_sub(from.max(0))).max(1) as u64;
                if after == i64::MAX {
                    break;
                }
                continue;
            }
        };
        if rows.is_empty() {
            break;
        }
        for (id, vals) in rows {
            after = id;
            each(vals)?;
        }
    }
    Ok(unreadable)
}

/// Copies what can be read from the damaged database `source` into `into` (an open, migrated
/// station database), once per source file.
pub fn salvage(
    source: &Path,
    into: &mut Connection,
    t_ms: i64,
) -> Result<SalvageReport, StoreError> {
    let name = source.display().to_string();
    let done: Option<String> = into
        .query_row(
            "SELECT summary FROM salvages WHERE source = ?1",
            [&name],
            |r| r.get(0),
        )
        .ok();
    if let Some(summary) = done {
        return Err(StoreError::Salvage(format!(
            "{name} was already salvaged: {summary}"
        )));
    }
    let old = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| StoreError::Salvage(format!("cannot open {name} even to read: {e}")))?;
    let mut report = SalvageReport {
        source: name.clone(),
        ..Default::default()
    };
    let tx = into.transaction()?;
    for &(table, keep_key) in TABLES {
        let mut t = TableSalvage {
            table: table.to_string(),
            ..Default::default()
        };
        let new_cols = columns(&tx, "main", table)?;
        let old_cols = match columns(&old, "main", table) {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => {
                t.error = Some("not in the damaged file".into());
                report.tables.push(t);
                continue;
            }
            Err(e) => {
                t.error = Some(e.to_string());
                report.tables.push(t);
                continue;
            }
        };
        // The columns both files have; a log's own integer key is given anew.
        let cols: Vec<String> = new_cols
            .iter()
            .filter(|(c, pk)| keep_key || !(*pk && c == "id"))
            .filter(|(c, _)| old_cols.iter().any(|(o, _)| o == c))
            .map(|(c, _)| c.clone())
            .collect();
        let marks = vec!["?"; cols.len()].join(", ");
        let insert = format!(
            "INSERT OR IGNORE INTO {table} ({}) VALUES ({marks})",
            cols.join(", ")
        );
        let mut st = tx.prepare(&insert)?;
        let mut copied = 0u64;
        match scan(&old, table, &cols, |vals| {
            copied += st.execute(params_from_iter(vals))? as u64;
            Ok(())
        }) {
            Ok(n) => t.unreadable = n,
            Err(e) => t.error = Some(e.to_string()),
        }
        t.copied = copied;
        report.tables.push(t);
    }
    // The audit trail, in order, as far as its chain verifies.
    {
        let mut st = tx.prepare(
            "INSERT INTO audit_salvaged (source, seq, event_id, t_ms, actor, kind, bed, detail, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut prev = GENESIS.to_string();
        let mut expected = 1i64;
        let cols: Vec<String> = [
            "seq",
            "event_id",
            "t_ms",
            "actor",
            "kind",
            "bed",
            "detail",
            "prev_hash",
            "hash",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut stopped: Option<String> = None;
        let scanned = scan(&old, "audit", &cols, |v| {
            if stopped.is_some() {
                return Ok(());
            }
            let text = |i: usize| match &v[i] {
                Value::Text(s) => s.clone(),
                _ => String::new(),
            };
            let int = |i: usize| match &v[i] {
                Value::Integer(n) => *n,
                _ => -1,
            };
            let row = AuditRow {
                seq: int(0),
                event_id: text(1),
                t_ms: int(2),
                actor: text(3),
                kind: text(4),
                bed: match &v[5] {
                    Value::Text(s) => Some(s.clone()),
                    _ => None,
                },
                detail: text(6),
                prev_hash: text(7),
                hash: text(8),
            };
            if row.seq != expected || row.prev_hash != prev || chain_hash(&row) != row.hash {
                stopped = Some(format!(
                    "the chain breaks at event {} (expected {expected})",
                    row.seq
                ));
                return Ok(());
            }
            st.execute(rusqlite::params![
                name,
                row.seq,
                row.event_id,
                row.t_ms,
                row.actor,
                row.kind,
                row.bed,
                row.detail,
                row.prev_hash,
                row.hash
            ])?;
            expected += 1;
            prev = row.hash;
            report.audit_verified += 1;
            Ok(())
        });
        report.audit_stopped = match scanned {
            Ok(0) => stopped,
            Ok(n) => stopped.or(Some(format!(
                "{n} events unreadable after event {}",
                expected - 1
            ))),
            Err(e) => Some(e.to_string()),
        };
    }
    let summary = serde_json::to_string(&report).unwrap_or_default();
    tx.execute(
        "INSERT INTO salvages (source, t_ms, summary) VALUES (?1, ?2, ?3)",
        rusqlite::params![name, t_ms, summary],
    )?;
    tx.commit()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AlarmLogRow, AuditEvent, Record, Store, UserRow, VitalRow};
    use std::io::{Seek, SeekFrom, Write};

    /// A station database with users, alarms and audit events first and a long tail of
    /// vitals after them, closed cleanly.
    fn filled(path: &Path) {
        let mut s = Store::open(path).unwrap();
        let mut recs = vec![Record::User(UserRow {
            username: "ana".into(),
            display_name: "Ana".into(),
            role: "nurse".into(),
            secret_hash: "$argon2id$x".into(),
            pin_hash: None,
            disabled: false,
            t_ms: 1,
            changed_by: "it".into(),
        })];
        for i in 0..200 {
            recs.push(Record::Alarm(AlarmLogRow {
                t_ms: 1_000 + i,
                kind: "raised".into(),
                alarm_id: Some(i as u64 + 1),
                bed: Some("bed-01".into()),
                condition: "limit:hr_high".into(),
                label: "HR high".into(),
                priority: Some("medium".into()),
                value: Some(130.0),
                limit: Some(120.0),
                user: None,
                detail: None,
                patient: None,
            }));
            recs.push(Record::Audit(AuditEvent {
                origin: "st".into(),
                t_ms: 1_000 + i,
                actor: "system".into(),
                kind: "alarm.raised".into(),
                bed: Some("bed-01".into()),
                detail: "{}".into(),
            }));
        }
        s.write_batch(&recs).unwrap();
        for batch in 0..40 {
            let vit: Vec<Record> = (0..1000)
                .map(|i| {
                    Record::Vital(VitalRow {
                        ts_ms: batch * 1000 + i,
                        // One row the test can find in the file's bytes (see `damage`).
                        device: if batch == 20 && i == 500 {
                            MARKER
                        } else {
                            "sim-01"
                        }
                        .into(),
                        bed: Some("bed-01".into()),
                        code: 147_842,
                        unit: 264_864,
                        value: Some(70.0),
                    })
                })
                .collect();
            s.write_batch(&vit).unwrap();
        }
        drop(s);
        // Everything into the main file, as after an orderly stop.
        let c = Connection::open(path).unwrap();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }

    const MARKER: &str = "MARKER-FOR-THE-DAMAGE";

    /// Overwrites the page that holds the marker row (a page of the vitals table: the device
    /// column is in no index) with garbage after its 8-byte header, as a bad sector would.
    fn damage(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        let at = bytes
            .windows(MARKER.len())
            .position(|w| w == MARKER.as_bytes())
            .expect("the marker row in the file");
        let page = (at / 4096 * 4096) as u64;
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(page + 8)).unwrap();
        f.write_all(&[0xA5; 4088]).unwrap();
    }

    #[test]
    fn a_damaged_file_is_found_moved_aside_and_salvaged_into_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wardwatch.sqlite");
        assert_eq!(check(&db), Health::Missing);
        filled(&db);
        assert_eq!(check(&db), Health::Ok);
        assert_eq!(check_opening(&db), Health::Ok);
        damage(&db);
        // A page in the middle of a table: the start-up check (first and last rows) passes
        // it, as it should (its cost must not grow with the file); the full check finds it.
        assert_eq!(check_opening(&db), Health::Ok);
        let Health::Damaged(why) = check(&db) else {
            panic!("damage not found")
        };
        assert!(!why.is_empty());

        let moved = move_aside(&db, 1_764_842_400_000).unwrap();
        assert!(!db.exists());
        assert!(moved
            .display()
            .to_string()
            .ends_with("wardwatch.sqlite.damaged-20251204T100000Z"));
        let mut fresh = Store::open(&db).unwrap();
        let report = fresh.salvage_from(&moved, 5).unwrap();
        let table = |t: &str| report.tables.iter().find(|x| x.table == t).unwrap().clone();
        assert_eq!(table("users").copied, 1);
        assert_eq!(table("alarm_log").copied, 200);
        // The damage is in the vitals: most of them read, the rest are counted.
        let v = table("vitals");
        assert!(v.copied > 39_000 && v.copied < 40_000, "{v:?}");
        assert!(
            v.unreadable > 0 && v.copied + v.unreadable >= 40_000,
            "{v:?}"
        );
        assert_eq!(report.audit_verified, 200);
        assert_eq!(report.audit_stopped, None);
        assert_eq!(fresh.users().unwrap()[0].username, "ana");
        assert_eq!(fresh.integrity_check().unwrap(), "ok");
        // Once per file.
        let again = fresh.salvage_from(&moved, 6).unwrap_err().to_string();
        assert!(again.contains("already salvaged"), "{again}");
    }

    /// Damage among the first rows a page read covers (here the whole table is smaller than
    /// one page read): the scan reads up to it row by row, skips it, and reads on. Once, a
    /// scan retried the same failing page read forever (key by key from the smallest key).
    #[test]
    fn damage_within_the_first_page_read_is_skipped_and_the_rest_copied() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("small.sqlite");
        let mut s = Store::open(&db).unwrap();
        let vit: Vec<Record> = (0..400)
            .map(|i| {
                Record::Vital(VitalRow {
                    ts_ms: i,
                    device: if i == 200 { MARKER } else { "sim-01" }.into(),
                    bed: Some("bed-01".into()),
                    code: 147_842,
                    unit: 264_864,
                    value: Some(70.0),
                })
            })
            .collect();
        s.write_batch(&vit).unwrap();
        drop(s);
        let c = Connection::open(&db).unwrap();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
        drop(c);
        damage(&db);
        let mut fresh = Store::open(&dir.path().join("new.sqlite")).unwrap();
        let report = fresh.salvage_from(&db, 5).unwrap();
        let v = report
            .tables
            .iter()
            .find(|x| x.table == "vitals")
            .unwrap()
            .clone();
        assert!(v.copied >= 200 && v.copied < 400, "{v:?}");
        assert!(v.unreadable > 0 && v.copied + v.unreadable >= 400, "{v:?}");
    }

    #[test]
    fn the_start_up_check_finds_a_ruined_schema_or_table_end_and_the_mark_of_a_full_check() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wardwatch.sqlite");
        assert_eq!(check_opening(&db), Health::Missing);
        filled(&db);
        // The last page holds the newest rows, the ones the writer appends after.
        let len = std::fs::metadata(&db).unwrap().len();
        let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.seek(SeekFrom::Start(len - 4096)).unwrap();
        f.write_all(&[0xA5; 4096]).unwrap();
        drop(f);
        let Health::Damaged(why) = check_opening(&db) else {
            panic!("a ruined last page passed")
        };
        assert!(why.contains("cannot be read"), "{why}");
        // The schema page (page 1, after the 100-byte header).
        let other = dir.path().join("other.sqlite");
        filled(&other);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&other)
            .unwrap();
        f.seek(SeekFrom::Start(100)).unwrap();
        f.write_all(&[0xA5; 3996]).unwrap();
        drop(f);
        assert!(matches!(check_opening(&other), Health::Damaged(_)));
        // The mark a background check leaves is read once.
        assert_eq!(take_mark(&other), None);
        mark_damaged(&other, "page 7: btree error").unwrap();
        assert_eq!(take_mark(&other).as_deref(), Some("page 7: btree error"));
        assert_eq!(take_mark(&other), None);
    }

    #[test]
    fn audit_events_are_copied_only_as_far_as_their_chain_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wardwatch.sqlite");
        filled(&db);
        // An edit in the middle of the trail (the chain breaks there), made the way a
        // person with sqlite3 would, triggers dropped first.
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'mallory' WHERE seq = 120;",
        )
        .unwrap();
        drop(c);
        let mut fresh = Store::open(&dir.path().join("new.sqlite")).unwrap();
        let report = fresh.salvage_from(&db, 5).unwrap();
        assert_eq!(report.audit_verified, 119);
        assert!(report
            .audit_stopped
            .unwrap()
            .contains("breaks at event 120"));
    }
}
