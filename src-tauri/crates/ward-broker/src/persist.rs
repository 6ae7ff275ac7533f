//! The broker's own durable state in SQLite: persistent sessions, their subscriptions, the
//! QoS 1/2 messages queued or in flight for them, inbound QoS 2 packet ids, and retained
//! messages.
//!
//! Writes go to one writer thread that commits whatever has queued up in one transaction
//! (group commit) and then raises a watermark. A connection that needs a write to be durable
//! before it acknowledges (PUBACK, PUBREC, PUBCOMP, CONNACK of a persistent session) takes a
//! ticket and holds its acknowledgement until the watermark passes it; it keeps reading and
//! writing meanwhile, so one commit covers many messages from many clients.
//!
//! Only what must be redelivered after a crash is written: a QoS 0 message, or a QoS 1/2
//! message that no persistent session will receive, never touches the disk.
//!
//! If the disk fails (full, read-only), the error is logged and counted, the batch's tickets are
//! recorded as failed and the watermark still moves: the connections waiting on that batch
//! refuse its QoS 1/2 messages instead of acknowledging them (they were never acknowledged, so
//! nothing acknowledged is lost). From then on, until a write works again (a probe write once a
//! second while nothing else is written), a new QoS 1/2 message that a persistent session needs
//! kept is refused before it is even queued for the store (MQTT 5: 0x83; 3.1.1: the connection
//! is closed unacknowledged), unless the station takes it in-process: the station's own store keeps
//! the ward's data, and a station that stopped acknowledging its monitors because its broker
//! database is full would stop alarming; that is the worse failure.

use crate::codec::{PubProps, Qos, SubOpts};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as smpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("broker store {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("broker store writer thread: {0}")]
    Thread(std::io::Error),
}

/// A message as stored: enough to rebuild a `Message`.
#[derive(Debug, Clone)]
pub(crate) struct StoredMsg {
    pub id: u64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: Qos,
    pub retain: bool,
    pub props: Option<PubProps>,
    pub expires_at_ms: Option<i64>,
    pub publisher: String,
}

pub(crate) enum Op {
    Msg(StoredMsg),
    Deliver {
        client: Arc<str>,
        msg_id: u64,
        qos: Qos,
        retain: bool,
        sub_ids: Vec<u32>,
    },
    DeliverySent {
        client: Arc<str>,
        msg_id: u64,
        pkid: u16,
    },
    DeliveryReleased {
        client: Arc<str>,
        msg_id: u64,
    },
    DeliveryDone {
        client: Arc<str>,
        msg_id: u64,
    },
    RetainSet(StoredMsg),
    RetainClear(String),
    InboundAdd {
        client: Arc<str>,
        pkid: u16,
    },
    InboundRemove {
        client: Arc<str>,
        pkid: u16,
    },
    SessionUpsert {
        client: Arc<str>,
        expiry: u32,
        /// Who the client authenticated as, so a restart can check its subscriptions'
        /// read rights before the client is back.
        username: Option<String>,
        anonymous: bool,
    },
    SessionOffline {
        client: Arc<str>,
        at_ms: i64,
    },
    SessionDelete(Arc<str>),
    SubAdd {
        client: Arc<str>,
        filter: String,
        opts: SubOpts,
    },
    SubRemove {
        client: Arc<str>,
        filter: String,
    },
}

/// Everything read back at start-up.
#[derive(Default)]
pub(crate) struct Loaded {
    pub sessions: Vec<LoadedSession>,
    pub retained: Vec<StoredMsg>,
    pub next_msg_id: u64,
}

pub(crate) struct LoadedSession {
    pub client: String,
    pub expiry: u32,
    pub offline_since_ms: Option<i64>,
    pub username: Option<String>,
    pub anonymous: bool,
    pub subs: Vec<(String, SubOpts)>,
    pub inbound_qos2: Vec<u16>,
    /// Deliveries in the order they were queued: message, qos, retain flag, subscription ids,
    /// packet id if it had been sent, and whether PUBREC had arrived.
    pub deliveries: Vec<LoadedDelivery>,
}

pub(crate) struct LoadedDelivery {
    pub msg: StoredMsg,
    pub qos: Qos,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    pub pkid: Option<u16>,
    pub released: bool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS msgs(
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,
    retain INTEGER NOT NULL, props TEXT, expires_at INTEGER, publisher TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries(
    client TEXT NOT NULL, msg_id INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
    sub_ids TEXT NOT NULL, pkid INTEGER, released INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(client, msg_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_msg ON deliveries(msg_id);
CREATE TABLE IF NOT EXISTS retained(
    topic TEXT PRIMARY KEY, payload BLOB NOT NULL, qos INTEGER NOT NULL, props TEXT,
    expires_at INTEGER, publisher TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbound_qos2(
    client TEXT NOT NULL, pkid INTEGER NOT NULL, PRIMARY KEY(client, pkid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions(
    client TEXT PRIMARY KEY, expiry INTEGER NOT NULL, offline_since INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subs(
    client TEXT NOT NULL, filter TEXT NOT NULL, opts TEXT NOT NULL,
    PRIMARY KEY(client, filter)) WITHOUT ROWID;
";

/// A ticket and the writes it covers.
type Batch = (u64, Vec<Op>);

pub(crate) struct Persist {
    /// Ticket counter and channel under one lock, so tickets enter the channel in order and
    /// the writer's watermark never passes a ticket it has not committed.
    tx: Mutex<(u64, smpsc::Sender<Batch>)>,
    committed: watch::Receiver<u64>,
    /// A second connection for reading spilled payloads back while the writer commits (WAL
    /// lets a reader and the writer work at once).
    reader: Mutex<Connection>,
    next_msg_id: AtomicU64,
    pub errors: Arc<AtomicU64>,
    pub commits: Arc<AtomicU64>,
    pub ops_written: Arc<AtomicU64>,
    /// The last write failed (a full disk, a read-only file system) and no write has worked
    /// since: new QoS 1/2 messages that only persistent sessions receive are refused.
    failing: Arc<AtomicBool>,
    failed: Arc<Mutex<FailedTickets>>,
}

/// The ticket ranges of batches whose commit failed, newest last. A connection asks once the
/// watermark has passed its ticket, which is soon after the failure, so the last few hundred
/// batches are plenty; the oldest are forgotten so a disk that stays broken costs no memory.
#[derive(Default)]
struct FailedTickets(std::collections::VecDeque<(u64, u64)>);

impl FailedTickets {
    const KEEP: usize = 1024;

    fn add(&mut self, first: u64, last: u64) {
        if self.0.len() == Self::KEEP {
            self.0.pop_front();
        }
        self.0.push_back((first, last));
    }

    fn contains(&self, ticket: u64) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&ticket))
    }
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> PersistError + '_ {
    move |source| PersistError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn open(path: &Path, full_sync: bool) -> Result<(Persist, Loaded), PersistError> {
    let e = sql_err(path);
    let conn = Connection::open(path).map_err(&e)?;
    // WAL with synchronous=NORMAL: a commit is in the OS once `commit` returns, so it survives
    // the process being killed (the failure this store is for); a power cut may lose the last
    // commits, which the station's UPS covers. `full_sync` (config `broker.fsync`) makes each
    // group commit wait for the disk as well.
    conn.execute_batch(if full_sync {
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
    } else {
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    })
    .map_err(&e)?;
    conn.execute_batch(SCHEMA).map_err(&e)?;
    // Stores from before the identity was kept get its columns (NULL: checked as nobody, so
    // such a session's subscriptions that need a read check receive nothing until the
    // client connects again).
    for col in ["username TEXT", "anonymous INTEGER NOT NULL DEFAULT 0"] {
        let has: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('sessions') WHERE name = ?1",
                [col.split(' ').next().unwrap_or_default()],
                |r| r.get::<_, i64>(0),
            )
            .map_err(&e)?
            > 0;
        if !has {
            conn.execute_batch(&format!("ALTER TABLE sessions ADD COLUMN {col}"))
                .map_err(&e)?;
        }
    }
    // Rows of sessions that are gone: a clean session's spilled messages when the station
    // stopped (a clean session does not outlive its connection, let alone a restart).
    conn.execute_batch(
        "DELETE FROM deliveries WHERE client NOT IN (SELECT client FROM sessions);
         DELETE FROM msgs WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = msgs.id);",
    )
    .map_err(&e)?;
    let loaded = load(&conn).map_err(&e)?;
    let reader = Connection::open(path).map_err(&e)?;
    // A WAL reader can still meet SQLITE_BUSY while the writer checkpoints; it waits for it
    // rather than report spilled messages as unreadable.
    reader
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(&e)?;
    let (tx, rx) = smpsc::channel::<Batch>();
    let (done_tx, done_rx) = watch::channel(0u64);
    let errors = Arc::new(AtomicU64::new(0));
    let commits = Arc::new(AtomicU64::new(0));
    let ops_written = Arc::new(AtomicU64::new(0));
    let failing = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(Mutex::new(FailedTickets::default()));
    let (errs, cms, opsw) = (errors.clone(), commits.clone(), ops_written.clone());
    let state = Counters {
        errors: errs,
        commits: cms,
        ops_written: opsw,
        failing: failing.clone(),
        failed: failed.clone(),
    };
    let label = path.display().to_string();
    std::thread::Builder::new()
        .name("broker-store".into())
        .spawn(move || writer(conn, rx, done_tx, state, label))
        .map_err(PersistError::Thread)?;
    let next = loaded.next_msg_id;
    Ok((
        Persist {
            tx: Mutex::new((1, tx)),
            committed: done_rx,
            reader: Mutex::new(reader),
            next_msg_id: AtomicU64::new(next),
            errors,
            commits,
            ops_written,
            failing,
            failed,
        },
        loaded,
    ))
}

impl Persist {
    pub fn next_msg_id(&self) -> u64 {
        self.next_msg_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the store's last write failed (and none has worked since).
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Whether the batch that held `ticket` failed to commit (its writes are not on disk).
    pub fn failed(&self, ticket: u64) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(ticket)
    }

    /// Queues writes; the returned ticket is durable once [`Persist::committed`] reaches it.
    pub fn submit(&self, ops: Vec<Op>) -> u64 {
        match self.tx.lock() {
            Ok(mut g) => {
                let ticket = g.0;
                g.0 += 1;
                if g.1.send((ticket, ops)).is_err() {
                    // The writer is gone (only at shutdown); nothing waits on it any more.
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    return 0;
                }
                ticket
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                0
            }
        }
    }

    /// Payloads of stored messages by id; an id without a row is left out.
    pub fn payloads(&self, ids: &[u64]) -> rusqlite::Result<HashMap<u64, bytes::Bytes>> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut q = conn.prepare_cached("SELECT payload FROM msgs WHERE id = ?1")?;
        let mut out = HashMap::with_capacity(ids.len());
        for id in ids {
            let p: Option<Vec<u8>> = q.query_row([*id as i64], |r| r.get(0)).optional()?;
            if let Some(p) = p {
                out.insert(*id, bytes::Bytes::from(p));
            }
        }
        Ok(out)
    }

    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Waits until `ticket` is committed (or the writer has stopped).
    pub async fn wait(&self, ticket: u64) {
        let mut rx = self.committed.clone();
        while *rx.borrow_and_update() < ticket {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The writer thread's counters and state, shared with [`Persist`].
struct Counters {
    errors: Arc<AtomicU64>,
    commits: Arc<AtomicU64>,
    ops_written: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
    failed: Arc<Mutex<FailedTickets>>,
}

/// A write that needs a new page, to learn whether the disk takes writes again while nothing
/// else is written (refused publishes write nothing). Its row is deleted again at once.
fn probe(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS write_probe (x BLOB);
         INSERT INTO write_probe VALUES (zeroblob(8192));",
    )?;
    tx.commit()?;
    conn.execute_batch("DELETE FROM write_probe")
}

fn writer(
    mut conn: Connection,
    rx: smpsc::Receiver<Batch>,
    done: watch::Sender<u64>,
    c: Counters,
    label: String,
) {
    loop {
        let first = if c.failing.load(Ordering::Relaxed) {
            match rx.recv_timeout(std::time::Duration::from_secs(1)) {
                Ok(b) => b,
                Err(smpsc::RecvTimeoutError::Timeout) => {
                    if probe(&mut conn).is_ok() {
                        c.failing.store(false, Ordering::Relaxed);
                        tracing::warn!(store = %label, "broker store writes work again");
                    }
                    continue;
                }
                Err(smpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(b) => b,
                Err(_) => break,
            }
        };
        let mut batch = vec![first];
        // Group commit: everything that queued while the last commit ran goes in this one.
        let mut n_ops = batch[0].1.len();
        while n_ops < 20_000 {
            match rx.try_recv() {
                Ok(more) => {
                    n_ops += more.1.len();
                    batch.push(more);
                }
                Err(_) => break,
            }
        }
        let first_ticket = batch[0].0;
        let last = batch.last().map(|b| b.0).unwrap_or(0);
        match apply(&mut conn, &batch) {
            Ok(()) => {
                c.commits.fetch_add(1, Ordering::Relaxed);
                c.ops_written.fetch_add(n_ops as u64, Ordering::Relaxed);
                if c.failing.swap(false, Ordering::Relaxed) {
                    tracing::warn!(store = %label, "broker store writes work again");
                }
            }
            Err(e) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                c.failing.store(true, Ordering::Relaxed);
                // Recorded before the watermark moves, so no waiting connection can see the
                // watermark past its ticket without also seeing the failure.
                c.failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .add(first_ticket, last);
                tracing::error!(store = %label, error = %e, ops = n_ops, "broker store write failed; the QoS 1/2 publishes of this batch that a persistent session needed kept are refused, not acknowledged, and so are new ones until writes work again");
            }
        }
        done.send_replace(last);
    }
}

fn props_json(p: &Option<PubProps>) -> Option<String> {
    p.as_ref().and_then(|p| serde_json::to_string(p).ok())
}

fn ids_text(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn apply(conn: &mut Connection, batch: &[Batch]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for (_, ops) in batch {
        for op in ops {
            match op {
                Op::Msg(m) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO msgs(id, topic, payload, qos, retain, props, expires_at, publisher)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(params![
                        m.id as i64,
                        m.topic,
                        m.payload,
                        m.qos,
                        m.retain,
                        props_json(&m.props),
                        m.expires_at_ms,
                        m.publisher
                    ])?;
                }
                Op::Deliver {
                    client,
                    msg_id,
                    qos,
                    retain,
                    sub_ids,
                } => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO deliveries(client, msg_id, qos, retain, sub_ids)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![
                        &**client,
                        *msg_id as i64,
                        qos,
                        retain,
                        ids_text(sub_ids)
                    ])?;
                }
                Op::DeliverySent {
                    client,
                    msg_id,
                    pkid,
                } => {
                    tx.prepare_cached(
                        "UPDATE deliveries SET pkid = ?3 WHERE client = ?1 AND msg_id = ?2",
                    )?
                    .execute(params![&**client, *msg_id as i64, pkid])?;
                }
                Op::DeliveryReleased { client, msg_id } => {
                    tx.prepare_cached(
                        "UPDATE deliveries SET released = 1 WHERE client = ?1 AND msg_id = ?2",
                    )?
                    .execute(params![&**client, *msg_id as i64])?;
                }
                Op::DeliveryDone { client, msg_id } => {
                    tx.prepare_cached("DELETE FROM deliveries WHERE client = ?1 AND msg_id = ?2")?
                        .execute(params![&**client, *msg_id as i64])?;
                    tx.prepare_cached(
                        "DELETE FROM msgs WHERE id = ?1
                         AND NOT EXISTS (SELECT 1 FROM deliveries WHERE msg_id = ?1)",
                    )?
                    .execute(params![*msg_id as i64])?;
                }
                Op::RetainSet(m) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO retained(topic, payload, qos, props, expires_at, publisher)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        m.topic,
                        m.payload,
                        m.qos,
                        props_json(&m.props),
                        m.expires_at_ms,
                        m.publisher
                    ])?;
                }
                Op::RetainClear(topic) => {
                    tx.prepare_cached("DELETE FROM retained WHERE topic = ?1")?
                        .execute(params![topic])?;
                }
                Op::InboundAdd { client, pkid } => {
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO inbound_qos2(client, pkid) VALUES (?1, ?2)",
                    )?
                    .execute(params![&**client, pkid])?;
                }
                Op::InboundRemove { client, pkid } => {
                    tx.prepare_cached("DELETE FROM inbound_qos2 WHERE client = ?1 AND pkid = ?2")?
                        .execute(params![&**client, pkid])?;
                }
                Op::SessionUpsert {
                    client,
                    expiry,
                    username,
                    anonymous,
                } => {
                    tx.prepare_cached(
                        "INSERT INTO sessions(client, expiry, offline_since, username, anonymous)
                         VALUES (?1, ?2, NULL, ?3, ?4)
                         ON CONFLICT(client) DO UPDATE SET expiry = ?2, offline_since = NULL,
                         username = ?3, anonymous = ?4",
                    )?
                    .execute(params![&**client, expiry, username, anonymous])?;
                }
                Op::SessionOffline { client, at_ms } => {
                    tx.prepare_cached("UPDATE sessions SET offline_since = ?2 WHERE client = ?1")?
                        .execute(params![&**client, at_ms])?;
                }
                Op::SessionDelete(client) => {
                    for sql in [
                        "DELETE FROM sessions WHERE client = ?1",
                        "DELETE FROM subs WHERE client = ?1",
                        "DELETE FROM inbound_qos2 WHERE client = ?1",
                        "DELETE FROM deliveries WHERE client = ?1",
                    ] {
                        tx.prepare_cached(sql)?.execute(params![&**client])?;
                    }
                    tx.prepare_cached(
                        "DELETE FROM msgs WHERE NOT EXISTS
                         (SELECT 1 FROM deliveries d WHERE d.msg_id = msgs.id)",
                    )?
                    .execute([])?;
                }
                Op::SubAdd {
                    client,
                    filter,
                    opts,
                } => {
                    let opts = serde_json::to_string(opts).unwrap_or_default();
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO subs(client, filter, opts) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![&**client, filter, opts])?;
                }
                Op::SubRemove { client, filter } => {
                    tx.prepare_cached("DELETE FROM subs WHERE client = ?1 AND filter = ?2")?
                        .execute(params![&**client, filter])?;
                }
            }
        }
    }
    tx.commit()
}

fn row_msg(r: &rusqlite::Row<'_>, base: usize) -> rusqlite::Result<StoredMsg> {
    let props: Option<String> = r.get(base + 5)?;
    Ok(StoredMsg {
        id: r.get::<_, i64>(base)? as u64,
        topic: r.get(base + 1)?,
        payload: r.get(base + 2)?,
        qos: r.get(base + 3)?,
        retain: r.get(base + 4)?,
        props: props.and_then(|p| serde_json::from_str(&p).ok()),
        expires_at_ms: r.get(base + 6)?,
        publisher: r.get(base + 7)?,
    })
}

fn load(conn: &Connection) -> rusqlite::Result<Loaded> {
    let mut out = Loaded::default();
    let max_id: Option<i64> = conn
        .query_row("SELECT max(id) FROM msgs", [], |r| r.get(0))
        .optional()?
        .flatten();
    out.next_msg_id = max_id.map(|m| m as u64 + 1).unwrap_or(1);
    let mut sessions =
        conn.prepare("SELECT client, expiry, offline_since, username, anonymous FROM sessions")?;
    let rows = sessions.query_map([], |r| {
        Ok(LoadedSession {
            client: r.get(0)?,
            expiry: r.get(1)?,
            offline_since_ms: r.get(2)?,
            username: r.get(3)?,
            anonymous: r.get(4)?,
            subs: Vec::new(),
            inbound_qos2: Vec::new(),
            deliveries: Vec::new(),
        })
    })?;
    for s in rows {
        out.sessions.push(s?);
    }
    for s in &mut out.sessions {
        let mut q = conn.prepare_cached("SELECT filter, opts FROM subs WHERE client = ?1")?;
        for row in q.query_map([&s.client], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })? {
            let (filter, opts) = row?;
            if let Ok(opts) = serde_json::from_str(&opts) {
                s.subs.push((filter, opts));
            }
        }
        let mut q = conn.prepare_cached("SELECT pkid FROM inbound_qos2 WHERE client = ?1")?;
        for row in q.query_map([&s.client], |r| r.get::<_, u16>(0))? {
            s.inbound_qos2.push(row?);
        }
        let mut q = conn.prepare_cached(
            "SELECT m.id, m.topic, m.payload, m.qos, m.retain, m.props, m.expires_at, m.publisher,
                    d.qos, d.retain, d.sub_ids, d.pkid, d.released
             FROM deliveries d JOIN msgs m ON m.id = d.msg_id
             WHERE d.client = ?1 ORDER BY d.msg_id",
        )?;
        for row in q.query_map([&s.client], |r| {
            let ids: String = r.get(10)?;
            Ok(LoadedDelivery {
                msg: row_msg(r, 0)?,
                qos: r.get(8)?,
                retain: r.get(9)?,
                sub_ids: ids.split(',').filter_map(|x| x.parse().ok()).collect(),
                pkid: r.get(11)?,
                released: r.get(12)?,
            })
        })? {
            s.deliveries.push(row?);
        }
    }
    let mut q = conn
        .prepare("SELECT 0, topic, payload, qos, 1, props, expires_at, publisher FROM retained")?;
    for m in q.query_map([], |r| row_msg(r, 0))? {
        out.retained.push(m?);
    }
    Ok(out)
}
