//! ward-store: the station's SQLite ring buffer.
//!
//! What it is: one SQLite file (rusqlite, bundled SQLite, WAL) holding vitals rows, waveform
//! chunks (one row per channel per second, not a row per sample) and device events, with
//! retention by time enforced by [`Store::prune`]. Writes come in batches, one transaction
//! each, from a single writer (ward-core's store thread); readers open their own connection.
//!
//! The alarm log lives here too (`alarm_log`, written by the same writer, never pruned by
//! retention), as do the audit chain (`audit`), the sync watermark, edited limits, station
//! users (`users`, argon2 hashes only) and nurses' bed assignments.
//!
//! What it is not: no threads or channels of its own, no knowledge of MQTT or of the alarm
//! engine's types (the log arrives as plain rows). The audit chain, outbox, rollups and the
//! size cap arrive with issues 5-6 as further tables and migrations here.
//!
//! Layout: `chunker` (packets -> 1 s chunks, pure), `schema` (migrations), this file (the
//! store API).
#![forbid(unsafe_code)]

pub mod audit;
pub mod chunker;
pub mod hl7;
mod retention;
mod review;
pub mod salvage;
mod schema;

pub use audit::{AuditEvent, AuditRow, Verification};
pub use chunker::{Chunker, WaveChunk};
pub use retention::{PruneStats, Retention, SizeReport};
pub use review::{TrendPoint, TrendResolution};
pub use schema::supported_version as schema_version;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {path} has schema version {found}, newer than this build ({supported})")]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("SQLite: {0}")]
    Sql(#[from] rusqlite::Error),
    /// Salvaging a damaged database could not start (or was already done).
    #[error("salvage: {0}")]
    Salvage(String),
}

/// Where a part of the station hands records to be written, in order. The station gives
/// its parts either the alarm driver's queue, which never drops (access's users and audit
/// events), or the store writer itself (sync's watermark).
pub trait RecordSink: Send + Sync {
    /// Queues `records`; false when the sink has stopped or refused them (the caller logs
    /// what was lost).
    fn append(&self, records: Vec<Record>) -> bool;
}

/// Wall-clock milliseconds since the Unix epoch: the time stamped on rows, audit events and
/// messages that people and other systems read (0 if the clock is before 1970).
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One numeric observation as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct VitalRow {
    pub ts_ms: i64,
    pub device: String,
    pub bed: Option<String>,
    pub code: u32,
    pub unit: u32,
    pub value: Option<f64>,
}

/// A span of full disclosure the station could not write: the data rows dropped between
/// `from_ms` and `to_ms` (their own times), and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StoreGap {
    pub from_ms: i64,
    pub to_ms: i64,
    pub vitals: u64,
    pub waves: u64,
    pub events: u64,
    pub reason: String,
}

/// Something a device said about itself: status change, will, device alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEvent {
    pub ts_ms: i64,
    pub device: String,
    pub bed: Option<String>,
    pub kind: String,
    pub detail: String,
}

/// One bed of the census as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CensusRow {
    pub bed: String,
    /// The Patient as JSON; `None` when the bed is empty.
    pub patient: Option<String>,
    pub source: String,
    pub t_ms: i64,
    pub user: String,
    pub limits_for: Option<String>,
}

/// One alarm log line: a state change of an alarm, or a bed-level action (pause, limits).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AlarmLogRow {
    pub t_ms: i64,
    pub kind: String,
    pub alarm_id: Option<u64>,
    pub bed: Option<String>,
    pub condition: String,
    pub label: String,
    pub priority: Option<String>,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    pub user: Option<String>,
    pub detail: Option<String>,
    /// The patient line of the bed's patient when the row was written (read back only;
    /// the engine's rows leave it `None`).
    pub patient: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Record {
    Vital(VitalRow),
    Wave(WaveChunk),
    Event(DeviceEvent),
    Alarm(AlarmLogRow),
    /// An audit event, appended to the hash chain (and so to the outbox).
    Audit(AuditEvent),
    /// The upstream acknowledged every event up to `seq`.
    SyncAck {
        upstream: String,
        seq: i64,
        t_ms: i64,
    },
    /// Full-disclosure rows the station had to drop (it could not write them).
    Gap(StoreGap),
    /// A station user, inserted or replacing the row with the same username.
    User(UserRow),
    /// The beds a nurse is assigned to, replacing their previous set.
    Assignment {
        username: String,
        beds: Vec<String>,
        t_ms: i64,
        by: String,
    },
    /// The device now at a bed (`None`: discharged), replacing the config's mapping.
    BedDevice {
        bed: String,
        device: Option<String>,
        t_ms: i64,
        user: String,
    },
    /// Who is in a bed now (`patient`: the Patient as JSON, `None`: empty), replacing the
    /// bed's census row but keeping its `limits_for`.
    Census {
        bed: String,
        patient: Option<String>,
        source: String,
        t_ms: i64,
        user: String,
    },
    /// The admission whose category defaults the bed's limits now follow.
    CensusLimits {
        bed: String,
        key: String,
    },
    /// A bed's limit rules as JSON, replacing what was stored for the bed.
    BedRules {
        bed: String,
        rules_json: String,
        t_ms: i64,
        user: String,
    },
}

/// A station user as stored. The hashes are argon2id PHC strings; the secrets themselves are
/// never stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub secret_hash: String,
    pub pin_hash: Option<String>,
    pub disabled: bool,
    pub t_ms: i64,
    pub changed_by: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub vitals: u64,
    pub wave_chunks: u64,
    pub wave_samples: u64,
    pub events: u64,
}

const USER_SELECT: &str = "SELECT username, display_name, role, secret_hash, pin_hash, disabled, t_ms, changed_by FROM users";

/// Maps [`USER_SELECT`] to a row.
fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        username: r.get(0)?,
        display_name: r.get(1)?,
        role: r.get(2)?,
        secret_hash: r.get(3)?,
        pin_hash: r.get(4)?,
        disabled: r.get(5)?,
        t_ms: r.get(6)?,
        changed_by: r.get(7)?,
    })
}

/// Maps `SELECT ts_ms, device, bed, code, unit, value` to a row.
fn vital_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VitalRow> {
    Ok(VitalRow {
        ts_ms: r.get(0)?,
        device: r.get(1)?,
        bed: r.get(2)?,
        code: r.get(3)?,
        unit: r.get(4)?,
        value: r.get(5)?,
    })
}

/// Maps `SELECT device, bed, channel, t0_us, rate_mhz, scale, offset, unit, samples` to a
/// chunk. Samples are stored as little-endian i16.
fn wave_chunk(r: &rusqlite::Row<'_>) -> rusqlite::Result<WaveChunk> {
    let blob: Vec<u8> = r.get(8)?;
    Ok(WaveChunk {
        device: r.get(0)?,
        bed: r.get(1)?,
        channel: r.get(2)?,
        t0_us: r.get(3)?,
        rate_mhz: r.get(4)?,
        scale: r.get::<_, f64>(5)? as f32,
        offset: r.get::<_, f64>(6)? as f32,
        unit: r.get(7)?,
        samples: blob
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect(),
    })
}

/// Maps `SELECT t_ms, kind, alarm_id, bed, condition, label, priority, value, limit_value,
/// user, detail` to a row.
fn alarm_log_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlarmLogRow> {
    Ok(AlarmLogRow {
        t_ms: r.get(0)?,
        kind: r.get(1)?,
        alarm_id: r.get::<_, Option<i64>>(2)?.map(|i| i as u64),
        bed: r.get(3)?,
        condition: r.get(4)?,
        label: r.get(5)?,
        priority: r.get(6)?,
        value: r.get(7)?,
        limit: r.get(8)?,
        user: r.get(9)?,
        detail: r.get(10)?,
        patient: r
            .get::<_, Option<String>>(11)?
            .and_then(|j| serde_json::from_str::<ward_model::Patient>(&j).ok())
            .map(|p| p.line()),
    })
}

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database for writing and brings the schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        // WAL: readers (review, tests) never block the writer. synchronous=FULL: each commit
        // is on the disk before it returns, because the broker acknowledges a device's QoS 1/2
        // message once the batch holding it is committed (issue 20); with NORMAL a power cut,
        // unlike a killed process, could still lose the last acknowledged batches. The writer
        // commits about five times a second, so one fsync each is cheap.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The WAL file is reused after each checkpoint but never shrinks by itself; without a
        // limit one burst (a week's prune after a long shutdown) would leave it large for good.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Each batch touches the last leaf of every series in every index (a 64-bed ward:
        // about a thousand pages). SQLite's default 2 MB cache held half of them, so each
        // commit read the rest back from the OS (2,800 reads a second in the soak), and more as
        // the indexes grew apart: the station's CPU crept with the file's size. 32 MB holds
        // them with room; it is only filled as far as used.
        conn.pragma_update(None, "cache_size", -32 * 1024)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        schema::migrate(&conn, path)?;
        Ok(Self { conn })
    }

    /// Copies what can be read from the damaged database `source` into this one (see
    /// [`salvage`]); once per source file.
    pub fn salvage_from(
        &mut self,
        source: &Path,
        t_ms: i64,
    ) -> Result<salvage::SalvageReport, StoreError> {
        salvage::salvage(source, &mut self.conn, t_ms)
    }

    /// Opens an existing database read-only (review, tests, the CLI).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Self { conn })
    }

    /// Writes a batch in one transaction: all of it or none of it.
    pub fn write_batch(&mut self, batch: &[Record]) -> Result<(), StoreError> {
        // IMMEDIATE: the write lock is taken up front, so a second writer (the CLI managing
        // users while the station runs) waits on the busy timeout instead of failing this
        // transaction half-way when it upgrades from read (the audit chain's last hash) to write.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut vital = tx.prepare_cached(
                "INSERT INTO vitals (ts_ms, device, bed, code, unit, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            // The 1-minute rollup is kept current as values arrive, so a 7-day trend reads
            // 10,080 rows instead of 600,000 and nothing has to aggregate at prune time.
            let mut rollup = tx.prepare_cached(
                "INSERT INTO vitals_1m (bed, code, minute, unit, n, v_sum, v_min, v_max)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5, ?5)
                 ON CONFLICT (bed, code, minute) DO UPDATE SET
                    n = n + 1, v_sum = v_sum + excluded.v_sum, unit = excluded.unit,
                    v_min = MIN(v_min, excluded.v_min), v_max = MAX(v_max, excluded.v_max)",
            )?;
            let mut wave = tx.prepare_cached(
                "INSERT INTO wave_chunks (device, bed, channel, t0_us, rate_mhz, scale, offset, unit, n, samples)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut event = tx.prepare_cached(
                "INSERT INTO device_events (ts_ms, device, bed, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut alarm = tx.prepare_cached(
                // The bed's patient at the time, from the admission history in this very
                // database (the engine knows beds, not people).
                "INSERT INTO alarm_log (t_ms, kind, alarm_id, bed, condition, label, priority, value, limit_value, user, detail, patient)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                    (SELECT patient FROM admissions WHERE bed = ?4 AND to_ms IS NULL ORDER BY from_ms DESC LIMIT 1))",
            )?;
            let mut bed_rules = tx.prepare_cached(
                "INSERT OR REPLACE INTO bed_rules (bed, rules_json, t_ms, user) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut sync = tx.prepare_cached(
                "INSERT INTO sync_state (upstream, acked_seq, t_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (upstream) DO UPDATE SET acked_seq = MAX(acked_seq, excluded.acked_seq), t_ms = excluded.t_ms",
            )?;
            let mut user = tx.prepare_cached(
                "INSERT OR REPLACE INTO users (username, display_name, role, secret_hash, pin_hash, disabled, t_ms, changed_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut unassign =
                tx.prepare_cached("DELETE FROM bed_assignments WHERE username = ?1")?;
            let mut assign = tx.prepare_cached(
                "INSERT OR REPLACE INTO bed_assignments (username, bed, t_ms, assigned_by) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut bed_device = tx.prepare_cached(
                "INSERT OR REPLACE INTO bed_devices (bed, device, t_ms, user) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut census = tx.prepare_cached(
                "INSERT INTO census (bed, patient, source, t_ms, user) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (bed) DO UPDATE SET patient = excluded.patient,
                    source = excluded.source, t_ms = excluded.t_ms, user = excluded.user",
            )?;
            let mut close_admission = tx.prepare_cached(
                "UPDATE admissions SET to_ms = ?2 WHERE bed = ?1 AND to_ms IS NULL",
            )?;
            let mut open_admission = tx.prepare_cached(
                "INSERT INTO admissions (bed, patient, from_ms) VALUES (?1, ?2, ?3)",
            )?;
            let mut census_limits =
                tx.prepare_cached("UPDATE census SET limits_for = ?2 WHERE bed = ?1")?;
            for r in batch {
                match r {
                    Record::Census {
                        bed,
                        patient,
                        source,
                        t_ms,
                        user,
                    } => {
                        census.execute(params![bed, patient, source, t_ms, user])?;
                        close_admission.execute(params![bed, t_ms])?;
                        if let Some(p) = patient {
                            open_admission.execute(params![bed, p, t_ms])?;
                        }
                    }
                    Record::CensusLimits { bed, key } => {
                        census_limits.execute(params![bed, key])?;
                    }
                    Record::BedDevice {
                        bed,
                        device,
                        t_ms,
                        user,
                    } => {
                        bed_device.execute(params![bed, device, t_ms, user])?;
                    }
                    Record::User(u) => {
                        user.execute(params![
                            u.username,
                            u.display_name,
                            u.role,
                            u.secret_hash,
                            u.pin_hash,
                            u.disabled,
                            u.t_ms,
                            u.changed_by
                        ])?;
                    }
                    Record::Assignment {
                        username,
                        beds,
                        t_ms,
                        by,
                    } => {
                        unassign.execute(params![username])?;
                        for bed in beds {
                            assign.execute(params![username, bed, t_ms, by])?;
                        }
                    }
                    Record::Audit(e) => audit::append(&tx, &[e])?,
                    Record::Gap(g) => {
                        tx.prepare_cached(
                            "INSERT INTO store_gaps (from_ms, to_ms, vitals, waves, events, reason)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )?
                        .execute(params![
                            g.from_ms,
                            g.to_ms,
                            g.vitals as i64,
                            g.waves as i64,
                            g.events as i64,
                            g.reason
                        ])?;
                    }
                    Record::SyncAck {
                        upstream,
                        seq,
                        t_ms,
                    } => {
                        sync.execute(params![upstream, seq, t_ms])?;
                    }
                    Record::BedRules {
                        bed,
                        rules_json,
                        t_ms,
                        user,
                    } => {
                        bed_rules.execute(params![bed, rules_json, t_ms, user])?;
                    }
                    Record::Alarm(a) => {
                        alarm.execute(params![
                            a.t_ms,
                            a.kind,
                            a.alarm_id.map(|i| i as i64),
                            a.bed,
                            a.condition,
                            a.label,
                            a.priority,
                            a.value,
                            a.limit,
                            a.user,
                            a.detail
                        ])?;
                    }
                    Record::Vital(v) => {
                        vital
                            .execute(params![v.ts_ms, v.device, v.bed, v.code, v.unit, v.value])?;
                        if let (Some(bed), Some(value)) = (&v.bed, v.value) {
                            rollup.execute(params![
                                bed,
                                v.code,
                                v.ts_ms.div_euclid(60_000),
                                v.unit,
                                value
                            ])?;
                        }
                    }
                    Record::Wave(c) => {
                        let blob: Vec<u8> =
                            c.samples.iter().flat_map(|s| s.to_le_bytes()).collect();
                        wave.execute(params![
                            c.device,
                            c.bed,
                            c.channel,
                            c.t0_us,
                            c.rate_mhz,
                            c.scale as f64,
                            c.offset as f64,
                            c.unit,
                            c.samples.len() as i64,
                            blob
                        ])?;
                    }
                    Record::Event(e) => {
                        event.execute(params![e.ts_ms, e.device, e.bed, e.kind, e.detail])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn counts(&self) -> Result<Counts, StoreError> {
        let one = |sql: &str| -> Result<u64, StoreError> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))?.max(0) as u64)
        };
        Ok(Counts {
            vitals: one("SELECT COUNT(*) FROM vitals")?,
            wave_chunks: one("SELECT COUNT(*) FROM wave_chunks")?,
            wave_samples: one("SELECT COALESCE(SUM(n), 0) FROM wave_chunks")?,
            events: one("SELECT COUNT(*) FROM device_events")?,
        })
    }

    /// Vitals of one device and code, oldest first.
    pub fn vitals(&self, device: &str, code: u32) -> Result<Vec<VitalRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT ts_ms, device, bed, code, unit, value FROM vitals
             WHERE device = ?1 AND code = ?2 ORDER BY ts_ms, id",
        )?;
        let rows = st.query_map(params![device, code], vital_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest stored value of one device and code.
    pub fn latest_vital(&self, device: &str, code: u32) -> Result<Option<VitalRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT ts_ms, device, bed, code, unit, value FROM vitals
                 WHERE device = ?1 AND code = ?2 ORDER BY ts_ms DESC, id DESC LIMIT 1",
                params![device, code],
                vital_row,
            )
            .optional()?)
    }

    /// Waveform chunks of one device and channel, in time order.
    pub fn wave_chunks(&self, device: &str, channel: u32) -> Result<Vec<WaveChunk>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT device, bed, channel, t0_us, rate_mhz, scale, offset, unit, samples FROM wave_chunks
             WHERE device = ?1 AND channel = ?2 ORDER BY t0_us",
        )?;
        let rows = st.query_map(params![device, channel], wave_chunk)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Distinct (device, channel) pairs that have waveform data.
    pub fn wave_channels(&self) -> Result<Vec<(String, u32)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT device, channel FROM wave_chunks ORDER BY device, channel")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The alarm log, newest first: one bed's (or all when `bed` is `None`), at most `limit`
    /// rows.
    pub fn alarm_log(
        &self,
        bed: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AlarmLogRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT t_ms, kind, alarm_id, bed, condition, label, priority, value, limit_value, user, detail, patient
             FROM alarm_log WHERE (?1 IS NULL OR bed = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![bed, limit as i64], alarm_log_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The alarms that had not ended when the log stopped (a stop, a crash, a power cut): for
    /// each, the rows of its last episode, from its "raised" row on, oldest first. Station
    /// alarms (no bed) are left out: the station judges those afresh when it starts.
    pub fn unfinished_alarms(&self) -> Result<Vec<Vec<AlarmLogRow>>, StoreError> {
        let mut last = self.conn.prepare(
            "SELECT a.alarm_id, a.id FROM alarm_log a
             JOIN (SELECT alarm_id, MAX(id) AS m FROM alarm_log WHERE alarm_id IS NOT NULL
                   GROUP BY alarm_id) l ON a.id = l.m
             WHERE a.kind NOT IN ('ended', 'reset') AND a.bed IS NOT NULL ORDER BY a.id",
        )?;
        let open: Vec<(i64, i64)> = last
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut episode = self.conn.prepare(
            "SELECT t_ms, kind, alarm_id, bed, condition, label, priority, value, limit_value, user, detail, patient
             FROM alarm_log WHERE alarm_id = ?1 AND id <= ?2 AND id >= (
                SELECT MAX(id) FROM alarm_log WHERE alarm_id = ?1 AND id <= ?2 AND kind = 'raised')
             ORDER BY id",
        )?;
        let mut out = Vec::new();
        for (alarm_id, last_id) in open {
            let rows: Vec<AlarmLogRow> = episode
                .query_map(params![alarm_id, last_id], alarm_log_row)?
                .collect::<Result<_, _>>()?;
            if rows.first().is_some_and(|r| r.kind == "raised") {
                out.push(rows);
            }
        }
        Ok(out)
    }

    /// Whether a station has run on this database before (its trail has a `station.start`;
    /// users created beforehand with the CLI do not count).
    pub fn station_ran_before(&self) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM audit WHERE kind = 'station.start')",
            [],
            |r| r.get(0),
        )?)
    }

    /// The highest alarm id in the log (0 when empty): a restarted engine numbers after it.
    pub fn max_alarm_id(&self) -> Result<u64, StoreError> {
        let m: Option<i64> =
            self.conn
                .query_row("SELECT MAX(alarm_id) FROM alarm_log", [], |r| r.get(0))?;
        Ok(m.map_or(0, |m| u64::try_from(m).unwrap_or(0)))
    }

    /// Audit events after `seq`, oldest first: the outbox when `seq` is the upstream's
    /// watermark.
    pub fn audit_after(&self, seq: i64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        audit::after(&self.conn, seq, limit)
    }

    pub fn audit_last_seq(&self) -> Result<i64, StoreError> {
        audit::last_seq(&self.conn)
    }

    /// The last event `upstream` acknowledged (0: none).
    pub fn sync_acked(&self, upstream: &str) -> Result<i64, StoreError> {
        audit::acked(&self.conn, upstream)
    }

    pub fn verify_audit(&self) -> Result<Verification, StoreError> {
        audit::verify(&self.conn)
    }

    pub fn audit_all(&self) -> Result<Vec<AuditRow>, StoreError> {
        audit::all(&self.conn)
    }

    /// Stored limit rules per bed: (bed, rules as JSON).
    /// Every station user, by username.
    pub fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(&format!("{USER_SELECT} ORDER BY username"))?;
        let rows = st.query_map([], user_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One user (each sign-in reads its user this way).
    pub fn user(&self, username: &str) -> Result<Option<UserRow>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(&format!("{USER_SELECT} WHERE username = ?1"))?;
        Ok(st.query_row(params![username], user_row).optional()?)
    }

    /// The census: every bed that ever had a patient, with who is in it now.
    pub fn census(&self) -> Result<Vec<CensusRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT bed, patient, source, t_ms, user, limits_for FROM census ORDER BY bed",
        )?;
        let rows = st.query_map([], |r| {
            Ok(CensusRow {
                bed: r.get(0)?,
                patient: r.get(1)?,
                source: r.get(2)?,
                t_ms: r.get(3)?,
                user: r.get(4)?,
                limits_for: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The patient (as JSON) who was in `bed` at `t_ms`, if anyone was.
    pub fn patient_at(&self, bed: &str, t_ms: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT patient FROM admissions WHERE bed = ?1 AND from_ms <= ?2
                 AND (to_ms IS NULL OR to_ms > ?2) ORDER BY from_ms DESC LIMIT 1",
                params![bed, t_ms],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Everyone who was in `bed` during `[from_ms, to_ms)`: (admitted at, patient JSON),
    /// oldest first.
    pub fn patients_between(
        &self,
        bed: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT from_ms, patient FROM admissions WHERE bed = ?1 AND from_ms < ?3
             AND (to_ms IS NULL OR to_ms > ?2) ORDER BY from_ms LIMIT 20",
        )?;
        let rows = st.query_map(params![bed, from_ms, to_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The devices that sent vitals for `bed` during `[from_ms, to_ms)`.
    pub fn devices_between(
        &self,
        bed: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT DISTINCT device FROM vitals WHERE bed = ?1 AND code = ?4
             AND ts_ms >= ?2 AND ts_ms < ?3 LIMIT 8",
        )?;
        // By heart rate, through the (bed, code, ts) index: every monitor here sends it.
        let rows = st.query_map(
            params![bed, from_ms, to_ms, ward_model::codes::MDC_ECG_HEART_RATE],
            |r| r.get(0),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// SQLite's `data_version`: changes when another connection (the console, the station's
    /// writer) commits to the file, so a reader can tell cheaply whether to read again.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// Beds whose device was admitted or discharged at the station: (bed, device or None).
    pub fn bed_devices(&self) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT bed, device FROM bed_devices ORDER BY bed")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// (username, bed) pairs: which nurse has which bed.
    pub fn assignments(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT username, bed FROM bed_assignments ORDER BY username, bed")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn bed_rules(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT bed, rules_json FROM bed_rules ORDER BY bed")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn events(&self, device: &str) -> Result<Vec<DeviceEvent>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT ts_ms, device, bed, kind, detail FROM device_events WHERE device = ?1 ORDER BY id",
        )?;
        let rows = st.query_map(params![device], |r| {
            Ok(DeviceEvent {
                ts_ms: r.get(0)?,
                device: r.get(1)?,
                bed: r.get(2)?,
                kind: r.get(3)?,
                detail: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// SQLite's own consistency check; "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vital(ts_ms: i64, value: f64) -> Record {
        Record::Vital(VitalRow {
            ts_ms,
            device: "mon-1".into(),
            bed: Some("bed-1".into()),
            code: 147_842,
            unit: 264_864,
            value: Some(value),
        })
    }

    fn chunk(t0_us: i64) -> Record {
        Record::Wave(WaveChunk {
            device: "mon-1".into(),
            bed: None,
            channel: 131_330,
            t0_us,
            rate_mhz: 250_000,
            scale: 0.005,
            offset: 0.0,
            unit: 266_418,
            samples: (0..250).map(|i| i as i16 - 100).collect(),
        })
    }

    #[test]
    fn alarm_log_round_trips_newest_first_and_survives_retention() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let row = |t_ms: i64, bed: &str, kind: &str| {
            Record::Alarm(AlarmLogRow {
                t_ms,
                kind: kind.into(),
                alarm_id: Some(7),
                bed: Some(bed.into()),
                condition: "limit:spo2_low".into(),
                label: "SpO2 low".into(),
                priority: Some("medium".into()),
                value: Some(85.0),
                limit: Some(90.0),
                user: (kind == "acknowledged").then(|| "nurse.ana".into()),
                detail: None,
                patient: None,
            })
        };
        s.write_batch(&[
            row(1_000, "bed-1", "raised"),
            row(2_000, "bed-2", "raised"),
            row(3_000, "bed-1", "acknowledged"),
        ])
        .unwrap();
        let all = s.alarm_log(None, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].kind, "acknowledged");
        assert_eq!(all[0].user.as_deref(), Some("nurse.ana"));
        assert_eq!(all[0].limit, Some(90.0));
        let bed1 = s.alarm_log(Some("bed-1"), 10).unwrap();
        assert_eq!(
            bed1.iter().map(|r| r.t_ms).collect::<Vec<_>>(),
            [3_000, 1_000]
        );
        assert_eq!(s.alarm_log(None, 1).unwrap().len(), 1);
        // Retention with zero windows removes vitals and waves, never the alarm log.
        let keep = Retention {
            waveforms: Duration::ZERO,
            trends: Duration::ZERO,
            max_bytes: None,
        };
        s.prune(10_000_000_000_000, keep).unwrap();
        assert_eq!(s.alarm_log(None, 10).unwrap().len(), 3);
        // Bed rules: the last write per bed wins.
        let rules = |json: &str| Record::BedRules {
            bed: "bed-1".into(),
            rules_json: json.into(),
            t_ms: 1,
            user: "charge.cho".into(),
        };
        s.write_batch(&[rules("[1]"), rules("[2]")]).unwrap();
        assert_eq!(
            s.bed_rules().unwrap(),
            [("bed-1".to_string(), "[2]".to_string())]
        );
    }

    #[test]
    fn batches_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("w.sqlite")).unwrap();
        s.write_batch(&[vital(1_000, 77.0), vital(2_000, 78.0), chunk(5_000_000)])
            .unwrap();
        let v = s.vitals("mon-1", 147_842).unwrap();
        assert_eq!(
            v.iter().map(|r| r.value).collect::<Vec<_>>(),
            [Some(77.0), Some(78.0)]
        );
        assert_eq!(
            s.latest_vital("mon-1", 147_842).unwrap().unwrap().value,
            Some(78.0)
        );
        let w = s.wave_chunks("mon-1", 131_330).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].samples.len(), 250);
        assert_eq!(w[0].samples[0], -100);
        assert_eq!(s.counts().unwrap().wave_samples, 250);
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn prune_keeps_exactly_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("w.sqlite")).unwrap();
        let hour_ms = 3_600_000i64;
        let now = 100 * hour_ms;
        s.write_batch(&[
            chunk((now - 2 * hour_ms) * 1000),
            chunk((now - hour_ms / 2) * 1000),
            vital(now - 3 * 24 * hour_ms, 70.0),
            vital(now - hour_ms, 71.0),
        ])
        .unwrap();
        let stats = s
            .prune(
                now,
                Retention {
                    waveforms: Duration::from_secs(3600),
                    trends: Duration::from_secs(2 * 24 * 3600),
                    max_bytes: None,
                },
            )
            .unwrap();
        // Raw vitals follow the waveform window; their rollup minute the trend window.
        assert_eq!((stats.wave_chunks, stats.vitals, stats.rollups), (1, 1, 1));
        assert_eq!(s.wave_chunks("mon-1", 131_330).unwrap().len(), 1);
        assert_eq!(s.vitals("mon-1", 147_842).unwrap()[0].value, Some(71.0));
    }

    #[test]
    fn reopening_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.sqlite");
        Store::open(&p)
            .unwrap()
            .write_batch(&[vital(1, 60.0)])
            .unwrap();
        let s = Store::open(&p).unwrap();
        assert_eq!(s.counts().unwrap().vitals, 1);
        let ro = Store::open_read_only(&p).unwrap();
        assert_eq!(ro.counts().unwrap().vitals, 1);
    }

    #[test]
    fn users_replace_in_place_and_assignments_replace_per_nurse() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("w.sqlite")).unwrap();
        let user = |role: &str, disabled: bool, t_ms: i64| UserRow {
            username: "nurse.ana".into(),
            display_name: "Ana".into(),
            role: role.into(),
            secret_hash: "$argon2id$x".into(),
            pin_hash: None,
            disabled,
            t_ms,
            changed_by: "it.bo".into(),
        };
        let assign = |beds: &[&str]| Record::Assignment {
            username: "nurse.ana".into(),
            beds: beds.iter().map(|b| b.to_string()).collect(),
            t_ms: 3,
            by: "charge.cy".into(),
        };
        s.write_batch(&[Record::User(user("nurse", false, 1)), assign(&["1", "2"])])
            .unwrap();
        s.write_batch(&[Record::User(user("charge_nurse", true, 2)), assign(&["3"])])
            .unwrap();
        assert_eq!(s.users().unwrap(), vec![user("charge_nurse", true, 2)]);
        assert_eq!(s.user("nobody").unwrap(), None);
        let bd = |device: Option<&str>| Record::BedDevice {
            bed: "bed-02".into(),
            device: device.map(str::to_string),
            t_ms: 4,
            user: "charge.cy".into(),
        };
        s.write_batch(&[bd(Some("mon-9")), bd(None)]).unwrap();
        assert_eq!(s.bed_devices().unwrap(), vec![("bed-02".to_string(), None)]);
        assert_eq!(
            s.assignments().unwrap(),
            vec![("nurse.ana".to_string(), "3".to_string())]
        );
    }
}
