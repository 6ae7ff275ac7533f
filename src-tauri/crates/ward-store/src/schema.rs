//! Schema migrations, tracked in SQLite's `user_version`. Each step runs once, in order, in a
//! transaction; a database from a newer build is refused rather than guessed at.

use crate::StoreError;
use rusqlite::Connection;
use std::path::Path;

const MIGRATIONS: &[&str] = &[
    // 1: the walking skeleton's ring buffer.
    "CREATE TABLE vitals (
        id     INTEGER PRIMARY KEY,
        ts_ms  INTEGER NOT NULL,
        device TEXT    NOT NULL,
        bed    TEXT,
        code   INTEGER NOT NULL,
        unit   INTEGER NOT NULL,
        value  REAL
     );
     CREATE INDEX vitals_device_code_ts ON vitals (device, code, ts_ms);
     CREATE INDEX vitals_ts ON vitals (ts_ms);
     CREATE TABLE wave_chunks (
        id       INTEGER PRIMARY KEY,
        device   TEXT    NOT NULL,
        bed      TEXT,
        channel  INTEGER NOT NULL,
        t0_us    INTEGER NOT NULL,
        rate_mhz INTEGER NOT NULL,
        scale    REAL    NOT NULL,
        offset   REAL    NOT NULL,
        unit     INTEGER NOT NULL,
        n        INTEGER NOT NULL,
        samples  BLOB    NOT NULL
     );
     CREATE INDEX wave_device_channel_t0 ON wave_chunks (device, channel, t0_us);
     CREATE INDEX wave_t0 ON wave_chunks (t0_us);
     CREATE TABLE device_events (
        id     INTEGER PRIMARY KEY,
        ts_ms  INTEGER NOT NULL,
        device TEXT    NOT NULL,
        bed    TEXT,
        kind   TEXT    NOT NULL,
        detail TEXT    NOT NULL
     );
     CREATE INDEX device_events_ts ON device_events (ts_ms);",
    // 2: the alarm log (IEC 60601-1-8 6.12). Never pruned by waveform or vitals retention.
    "CREATE TABLE alarm_log (
        id          INTEGER PRIMARY KEY,
        t_ms        INTEGER NOT NULL,
        kind        TEXT    NOT NULL,
        alarm_id    INTEGER,
        bed         TEXT,
        condition   TEXT    NOT NULL,
        label       TEXT    NOT NULL,
        priority    TEXT,
        value       REAL,
        limit_value REAL,
        user        TEXT,
        detail      TEXT
     );
     CREATE INDEX alarm_log_bed_t ON alarm_log (bed, t_ms);
     CREATE INDEX alarm_log_t ON alarm_log (t_ms);
     -- Limits edited at the station, per bed (JSON list of rules), kept across restarts.
     CREATE TABLE bed_rules (
        bed        TEXT PRIMARY KEY,
        rules_json TEXT    NOT NULL,
        t_ms       INTEGER NOT NULL,
        user       TEXT    NOT NULL
     );",
    // 3: the audit trail (hash-chained, append-only) and the sync watermark per upstream.
    "CREATE TABLE audit (
        seq       INTEGER PRIMARY KEY,
        event_id  TEXT    NOT NULL UNIQUE,
        t_ms      INTEGER NOT NULL,
        actor     TEXT    NOT NULL,
        kind      TEXT    NOT NULL,
        bed       TEXT,
        detail    TEXT    NOT NULL,
        prev_hash TEXT    NOT NULL,
        hash      TEXT    NOT NULL
     );
     CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
     CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
     CREATE TABLE sync_state (
        upstream  TEXT    PRIMARY KEY,
        acked_seq INTEGER NOT NULL,
        t_ms      INTEGER NOT NULL
     );",
    // 4: station users (argon2id PHC strings, never secrets) and which beds each nurse has.
    // Rows change in place (password reset, disable); the history is in the audit trail.
    "CREATE TABLE users (
        username     TEXT    PRIMARY KEY,
        display_name TEXT    NOT NULL,
        role         TEXT    NOT NULL,
        secret_hash  TEXT    NOT NULL,
        pin_hash     TEXT,
        disabled     INTEGER NOT NULL DEFAULT 0,
        t_ms         INTEGER NOT NULL,
        changed_by   TEXT    NOT NULL
     );
     CREATE TABLE bed_assignments (
        username    TEXT    NOT NULL,
        bed         TEXT    NOT NULL,
        t_ms        INTEGER NOT NULL,
        assigned_by TEXT    NOT NULL,
        PRIMARY KEY (username, bed)
     );",
    // 5: devices admitted to or discharged from beds at the station; over the config's map.
    "CREATE TABLE bed_devices (
        bed    TEXT    PRIMARY KEY,
        device TEXT,
        t_ms   INTEGER NOT NULL,
        user   TEXT    NOT NULL
     );",
    // 6: review by bed (full disclosure and trends follow the bed, not the device, so a
    // monitor moved between beds never mixes patients), and 1-minute rollups for long trends.
    // Rollups are kept per bed; a vital from a device at no bed has no trend row.
    // The by-device indexes go: nothing at run time reads by device, and at 64 beds the
    // vitals one alone would take 2 GB of a 72 h window (by-device reads in tests and
    // diagnostics scan instead).
    "DROP INDEX vitals_device_code_ts;
     DROP INDEX wave_device_channel_t0;
     CREATE INDEX wave_bed_channel_t0 ON wave_chunks (bed, channel, t0_us);
     CREATE INDEX vitals_bed_code_ts ON vitals (bed, code, ts_ms);
     CREATE TABLE vitals_1m (
        bed    TEXT    NOT NULL,
        code   INTEGER NOT NULL,
        minute INTEGER NOT NULL,
        unit   INTEGER NOT NULL,
        n      INTEGER NOT NULL,
        v_sum  REAL    NOT NULL,
        v_min  REAL    NOT NULL,
        v_max  REAL    NOT NULL,
        PRIMARY KEY (bed, code, minute)
     ) WITHOUT ROWID;
     CREATE INDEX vitals_1m_minute ON vitals_1m (minute);
     INSERT INTO vitals_1m (bed, code, minute, unit, n, v_sum, v_min, v_max)
        SELECT bed, code, ts_ms / 60000, MAX(unit), COUNT(*), SUM(value), MIN(value), MAX(value)
        FROM vitals WHERE bed IS NOT NULL AND value IS NOT NULL
        GROUP BY bed, code, ts_ms / 60000;",
    // 7: alarm episodes by id: a restarted station finds the alarms that were still active
    // (latched, acknowledged) when it stopped, and continues numbering after the last id.
    "CREATE INDEX alarm_log_alarm ON alarm_log (alarm_id, id);",
    // 8: who is in each bed (the census). `patient` is the Patient as JSON, NULL when the bed
    // is empty; `source` says who admitted (manual or adt); `limits_for` is the admission
    // whose category defaults the station last gave the bed's alarm limits, so a change made
    // while the station was down is applied at its next start, and only once.
    "CREATE TABLE census (
        bed        TEXT    PRIMARY KEY,
        patient    TEXT,
        source     TEXT    NOT NULL,
        t_ms       INTEGER NOT NULL,
        user       TEXT    NOT NULL,
        limits_for TEXT
     );
     -- Who was in each bed when: every strip, report and export names the patient of its time,
     -- not whoever is in the bed now. A census change closes the bed's open row.
     CREATE TABLE admissions (
        bed     TEXT    NOT NULL,
        patient TEXT    NOT NULL,
        from_ms INTEGER NOT NULL,
        to_ms   INTEGER
     );
     CREATE INDEX admissions_bed_from ON admissions (bed, from_ms);
     -- The patient of each bed alarm log row, as admitted when the row was written.
     ALTER TABLE alarm_log ADD COLUMN patient TEXT;",
    // 9: the HL7 outbox (PCD-01 to the interface engine, PCD-04 to the alarm manager) and the
    // producers' cursors (the alarm log row last turned into messages).
    "CREATE TABLE hl7_outbox (
        id          INTEGER PRIMARY KEY,
        dest        TEXT    NOT NULL,
        bed         TEXT,
        control_id  TEXT    NOT NULL UNIQUE,
        message     TEXT    NOT NULL,
        t_ms        INTEGER NOT NULL,
        state       TEXT    NOT NULL DEFAULT 'pending',
        attempts    INTEGER NOT NULL DEFAULT 0,
        answer      TEXT,
        answered_ms INTEGER
     );
     CREATE INDEX hl7_outbox_pending ON hl7_outbox (dest, state, id);
     CREATE TABLE hl7_cursor (
        name  TEXT    PRIMARY KEY,
        value INTEGER NOT NULL
     );",
    // 10: what `wardwatch store salvage` recovered from a damaged database, and the gaps
    // full disclosure has where the disk refused writes. Its audit events
    // keep their own hash chain (verified up to the damage) beside this database's, which
    // they cannot join; `salvages` names each file salvaged, so none is taken twice.
    "CREATE TABLE audit_salvaged (
        source    TEXT    NOT NULL,
        seq       INTEGER NOT NULL,
        event_id  TEXT    NOT NULL,
        t_ms      INTEGER NOT NULL,
        actor     TEXT    NOT NULL,
        kind      TEXT    NOT NULL,
        bed       TEXT,
        detail    TEXT    NOT NULL,
        prev_hash TEXT    NOT NULL,
        hash      TEXT    NOT NULL,
        PRIMARY KEY (source, seq)
     );
     CREATE TABLE salvages (
        source  TEXT    PRIMARY KEY,
        t_ms    INTEGER NOT NULL,
        summary TEXT    NOT NULL
     );
     -- Full-disclosure data the station could not write (disk full, I/O errors): the time
     -- span of what was dropped, how much, and why. Review shows them.
     CREATE TABLE store_gaps (
        id      INTEGER PRIMARY KEY,
        from_ms INTEGER NOT NULL,
        to_ms   INTEGER NOT NULL,
        vitals  INTEGER NOT NULL,
        waves   INTEGER NOT NULL,
        events  INTEGER NOT NULL,
        reason  TEXT    NOT NULL
     );
     CREATE INDEX store_gaps_to ON store_gaps (to_ms);",
];

/// The newest schema version this program writes (and the newest it will open).
pub fn supported_version() -> i64 {
    MIGRATIONS.len() as i64
}

pub(crate) fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = supported_version();
    if current > supported {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: current,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {version}; COMMIT;"
        ))?;
        tracing::info!(version, "store schema migrated");
    }
    Ok(())
}
