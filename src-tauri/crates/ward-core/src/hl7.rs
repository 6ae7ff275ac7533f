//! The HL7 interfaces' drivers: the ADT feed's MLLP listener (this file's `decide` is pure:
//! message in, census op and acknowledgement out; `serve` is the thin tokio driver).
//!
//! Every message is answered (docs/hl7.md, "ACK rules"):
//! - AA: applied; or for another unit, or a patient this unit does not have (ignored, said in
//!   MSA-3);
//! - AE: readable but not applicable here (unknown bed, discharge of a patient not here, a
//!   census refusal), the reason in MSA-3 and ERR-8;
//! - AR: refused (not HL7, not ADT, an event the station does not take, a field it cannot read);
//! - a repeated control id from the same sender gets the first answer again, and changes
//!   nothing.
//!
//! Each message is counted by outcome and kept in the audit trail (`hl7.adt`, with its control
//! id, event, answer and reason); what it changed has its own `patient.*` events.

use crate::census::{Census, Op, Source};
use crate::patients::Patients;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use ward_config::{BedConfig, Hl7Config};
use ward_hl7::ack::{AckCode, Sender};
use ward_hl7::adt::{self, AdtAction, Location};
use ward_hl7::er7::Message;
use ward_hl7::mllp::{self, Frame, Framer};

/// Counters by outcome (`adt_aa`, `adt_ae`, `adt_ar`, `adt_ignored`, `adt_duplicate`,
/// `mllp_junk_bytes`, `adt_connections`).
#[derive(Clone, Default)]
pub struct Hl7Counters(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl Hl7Counters {
    pub fn add(&self, what: &'static str, n: u64) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(what).or_default() += n;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.to_string(), *v)).collect())
            .unwrap_or_default()
    }
}

/// What to do with one ADT message.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub code: AckCode,
    /// MSA-3: why (empty when applied).
    pub text: String,
    /// The census change, when there is one to try.
    pub op: Option<Op>,
    /// Read but not for this unit.
    pub ignored: bool,
}

impl Decision {
    fn ignore(text: String) -> Self {
        Decision {
            code: AckCode::Accept,
            text,
            op: None,
            ignored: true,
        }
    }

    fn error(text: String) -> Self {
        Decision {
            code: AckCode::Error,
            text,
            op: None,
            ignored: false,
        }
    }

    fn apply(op: Op) -> Self {
        Decision {
            code: AckCode::Accept,
            text: String::new(),
            op: Some(op),
            ignored: false,
        }
    }
}

/// Decides what an ADT message asks of this station's census (pure).
pub fn decide(
    m: &Message,
    cfg: &Hl7Config,
    beds: &[BedConfig],
    census: &Census,
    today: &str,
) -> Decision {
    let a = match adt::read(m, today) {
        Ok(a) => a,
        Err(e) => {
            return Decision {
                code: AckCode::Reject,
                text: e.to_string(),
                op: None,
                ignored: false,
            }
        }
    };
    let ours = |l: &Option<Location>| l.as_ref().is_some_and(|l| cfg.ours(&l.point_of_care));
    let bed_of = |l: &Location| {
        cfg.bed_for(&l.room, &l.bed, beds)
            .map(|b| b.to_string())
            .ok_or_else(|| format!("PV1-3 {l} is not a bed of this station"))
    };
    let here = census
        .bed_of(&a.patient.mrn, &a.patient.authority)
        .map(str::to_string);
    let mrn = &a.patient.mrn;
    // The patient as the census keeps them: ADT is the truth for identity, but the category
    // (which sets alarm limits) is kept once admitted; a new admission takes it from age.
    let mut patient = a.patient.clone();
    if let Some(cur) = here.as_deref().and_then(|b| census.get(b)) {
        patient.category = cur.patient.category;
    }
    match a.action {
        AdtAction::Admit | AdtAction::CancelDischarge => {
            if !ours(&a.location) {
                return Decision::ignore(format!(
                    "PV1-3 {} is not this unit; ignored",
                    loc(&a.location)
                ));
            }
            match a.location.as_ref().map(bed_of) {
                Some(Ok(bed)) => Decision::apply(Op::Admit { bed, patient }),
                Some(Err(e)) => Decision::error(e),
                None => Decision::error("PV1-3 (assigned location) is empty".into()),
            }
        }
        AdtAction::Transfer | AdtAction::CancelTransfer => {
            match (ours(&a.location), here) {
                (true, Some(from)) => match a.location.as_ref().map(bed_of) {
                    Some(Ok(to)) if to == from => Decision::apply(Op::Update { patient }),
                    Some(Ok(to)) => Decision::apply(Op::Transfer { from, to }),
                    Some(Err(e)) => Decision::error(e),
                    None => Decision::error("PV1-3 (assigned location) is empty".into()),
                },
                // Arrives from another unit.
                (true, None) => match a.location.as_ref().map(bed_of) {
                    Some(Ok(bed)) => Decision::apply(Op::Admit { bed, patient }),
                    Some(Err(e)) => Decision::error(e),
                    None => Decision::error("PV1-3 (assigned location) is empty".into()),
                },
                // Leaves this unit: discharged from it.
                (false, Some(bed)) => Decision::apply(Op::Discharge { bed }),
                (false, None) => Decision::ignore(format!(
                    "MRN {mrn} is not in this unit and PV1-3 {} is not this unit; ignored",
                    loc(&a.location)
                )),
            }
        }
        AdtAction::Discharge | AdtAction::CancelAdmit => match here {
            Some(bed) => Decision::apply(Op::Discharge { bed }),
            None if ours(&a.location) => Decision::error(format!("MRN {mrn} is not admitted here")),
            None => Decision::ignore(format!("MRN {mrn} is not in this unit; ignored")),
        },
        AdtAction::Update => match here {
            Some(_) => Decision::apply(Op::Update { patient }),
            None if ours(&a.location) => Decision::error(format!("MRN {mrn} is not admitted here")),
            None => Decision::ignore(format!("MRN {mrn} is not in this unit; ignored")),
        },
    }
}

fn loc(l: &Option<Location>) -> String {
    l.as_ref().map(Location::to_string).unwrap_or_default()
}

/// The ADT feed's shared state: the census, who we are, what was answered recently.
pub(crate) struct AdtFeed {
    pub cfg: Hl7Config,
    pub beds: Vec<BedConfig>,
    pub patients: Arc<Patients>,
    pub counters: Hl7Counters,
    /// (sender, control id) -> the answer given, newest last; a resend gets it again.
    seen: Mutex<VecDeque<((String, String), String)>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// How many answered control ids are remembered for duplicates.
const SEEN: usize = 4096;

impl AdtFeed {
    pub fn new(
        cfg: Hl7Config,
        beds: Vec<BedConfig>,
        patients: Arc<Patients>,
        counters: Hl7Counters,
    ) -> Self {
        Self {
            cfg,
            beds,
            patients,
            counters,
            seen: Mutex::new(VecDeque::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn me(&self) -> Sender {
        Sender {
            application: self.cfg.application.clone(),
            facility: self.cfg.facility.clone(),
        }
    }

    /// Handles one framed message and returns the framed-to-be answer (blocking: it may write
    /// the database and set limits).
    pub fn handle(&self, text: &str) -> String {
        let now = chrono::Utc::now();
        let stamp = now.format("%Y%m%d%H%M%S%z").to_string();
        let ack_id = format!(
            "WW{}-{}",
            now.format("%Y%m%d%H%M%S"),
            self.next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let msg = match Message::parse(text) {
            Ok(m) => m,
            Err(e) => {
                self.counters.add("adt_ar", 1);
                tracing::warn!(error = %e, "HL7 message refused");
                self.audit(None, "AR", &e.to_string(), "");
                return ward_hl7::ack::ack(
                    None,
                    AckCode::Reject,
                    &e.to_string(),
                    &self.me(),
                    &stamp,
                    &ack_id,
                );
            }
        };
        let key = (msg.get("MSH", 3, 1), msg.control_id());
        if let Some(prev) = self.seen.lock().ok().and_then(|s| {
            s.iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|(_, a)| a.clone())
        }) {
            self.counters.add("adt_duplicate", 1);
            tracing::info!(control_id = %key.1, "HL7 message repeated; answered as before, not applied again");
            self.audit(
                Some(&msg),
                "duplicate",
                "repeated control id: answered as before",
                "",
            );
            return prev;
        }
        let today = chrono::Local::now().format("%Y-%m-%d").to_string();
        let census = self.patients.snapshot();
        let mut d = decide(&msg, &self.cfg, &self.beds, &census, &today);
        let actor = format!("adt:{}", if key.0.is_empty() { "unknown" } else { &key.0 });
        if let Some(op) = d.op.take() {
            let extra = serde_json::json!({ "hl7_control_id": key.1, "hl7_event": msg.kind().1 });
            if let Err(e) = self.patients.apply(&op, Source::Adt, &actor, extra) {
                d.code = AckCode::Error;
                d.text = e.to_string();
            }
        }
        let counter = match (d.code, d.ignored) {
            (AckCode::Accept, true) => "adt_ignored",
            (AckCode::Accept, false) => "adt_aa",
            (AckCode::Error, _) => "adt_ae",
            (AckCode::Reject, _) => "adt_ar",
        };
        self.counters.add(counter, 1);
        if d.code != AckCode::Accept {
            tracing::warn!(control_id = %key.1, code = d.code.as_str(), reason = %d.text, "HL7 ADT not applied");
        }
        self.audit(Some(&msg), d.code.as_str(), &d.text, &actor);
        let answer = ward_hl7::ack::ack(Some(&msg), d.code, &d.text, &self.me(), &stamp, &ack_id);
        if let Ok(mut s) = self.seen.lock() {
            s.push_back((key, answer.clone()));
            while s.len() > SEEN {
                s.pop_front();
            }
        }
        answer
    }

    fn audit(&self, msg: Option<&Message>, answer: &str, reason: &str, actor: &str) {
        let detail = serde_json::json!({
            "control_id": msg.map(Message::control_id),
            "sender": msg.map(|m| m.get("MSH", 3, 1)),
            "event": msg.map(|m| m.kind().1),
            "answer": answer,
            "reason": reason,
        });
        self.patients.audit(
            if actor.is_empty() { "adt" } else { actor },
            "hl7.adt",
            detail,
        );
    }
}

/// Serves the ADT feed on `listener` (over TLS when `tls` is set) until `stop`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<ward_broker::TlsAcceptor>,
    feed: Arc<AdtFeed>,
    stop: CancellationToken,
) {
    loop {
        let (sock, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "ADT listener accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        feed.counters.add("adt_connections", 1);
        tracing::info!(%peer, "ADT feed connected");
        let feed = feed.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => connection(sock, feed, stop).await,
                Some(acceptor) => {
                    // A handshake that does not finish in 10 s is a stuck or hostile client.
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(sock),
                    );
                    match handshake.await {
                        Ok(Ok(s)) => connection(s, feed, stop).await,
                        Ok(Err(e)) => {
                            feed.counters.add("adt_tls_refused", 1);
                            Err(e)
                        }
                        Err(_) => {
                            feed.counters.add("adt_tls_refused", 1);
                            Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "TLS handshake timed out",
                            ))
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::info!(%peer, error = %e, "ADT feed connection ended");
            }
        });
    }
}

async fn connection<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut sock: S,
    feed: Arc<AdtFeed>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = sock.read(&mut buf) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        for f in framer.push(&buf[..n]) {
            match f {
                Frame::Message(text) => {
                    let feed = feed.clone();
                    let answer = tokio::task::spawn_blocking(move || feed.handle(&text))
                        .await
                        .map_err(std::io::Error::other)?;
                    sock.write_all(&mllp::frame(&answer)).await?;
                }
                Frame::Junk(n) => {
                    feed.counters.add("mllp_junk_bytes", n as u64);
                    tracing::warn!(bytes = n, "bytes outside MLLP frames skipped");
                }
            }
        }
    }
}
