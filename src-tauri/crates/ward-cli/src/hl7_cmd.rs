//! `wardwatch hl7 …`: what IT looks at when the interface engine or the alarm manager
//! refused the station's messages.

use crate::accounts::ConfigArg;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Hl7Command {
    /// Messages the receiver refused (AE/AR): kept, never dropped; with the answer.
    Failed {
        #[command(flatten)]
        config: ConfigArg,
        /// Print each message in full (segments on their own lines).
        #[arg(long)]
        full: bool,
    },
    /// Messages not yet answered, per destination.
    Backlog {
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub fn command(c: Hl7Command) -> anyhow::Result<()> {
    match c {
        Hl7Command::Failed { config, full } => {
            let cfg = config.load()?;
            let store = ward_store::Store::open_read_only(&cfg.db_path())?;
            let failed = store.hl7_messages(Some("failed"))?;
            for r in &failed {
                println!(
                    "{} {} bed {} control id {} attempts {}: {}",
                    ward_core::hl7_out::hl7_time(r.msg.t_ms),
                    r.msg.dest,
                    r.msg.bed.as_deref().unwrap_or("-"),
                    r.msg.control_id,
                    r.attempts,
                    r.answer.as_deref().unwrap_or("")
                );
                if full {
                    println!("{}\n", r.msg.message.replace('\r', "\n"));
                }
            }
            if failed.is_empty() {
                println!("no refused HL7 messages");
            }
            Ok(())
        }
        Hl7Command::Backlog { config } => {
            let cfg = config.load()?;
            let store = ward_store::Store::open_read_only(&cfg.db_path())?;
            for dest in [ward_core::hl7_out::PCD01, ward_core::hl7_out::PCD04] {
                println!("{dest}: {} unanswered", store.hl7_backlog(dest)?);
            }
            Ok(())
        }
    }
}
