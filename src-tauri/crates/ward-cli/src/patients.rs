//! `wardwatch patients …`: the census at the station's console. Changes are written to the
//! station's database (row and audit event in one transaction) whether or not the station
//! runs; a running station shows them within a second and sets the bed's limits.

use crate::accounts::{console_actor, ConfigArg};
use clap::{Args, Subcommand};
use ward_core::census::Op;
use ward_core::Config;
use ward_model::{Category, Patient, Sex};

#[derive(Args)]
pub struct PatientArgs {
    /// The hospital's identifier (MRN).
    #[arg(long)]
    mrn: String,
    /// Who issued the MRN, e.g. CITYHOSP.
    #[arg(long, default_value = "")]
    authority: String,
    #[arg(long)]
    family: String,
    #[arg(long, default_value = "")]
    given: String,
    /// YYYY-MM-DD.
    #[arg(long, default_value = "")]
    birth_date: String,
    /// F, M, O or U.
    #[arg(long, default_value = "U")]
    sex: String,
    /// adult, pediatric or neonatal: chooses the bed's default alarm limits.
    #[arg(long, default_value = "adult")]
    category: String,
    /// Visit (encounter) number.
    #[arg(long)]
    visit: Option<String>,
}

#[derive(Subcommand)]
pub enum PatientsCommand {
    /// Admit a patient to an empty bed.
    Admit {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        bed: String,
        #[command(flatten)]
        patient: PatientArgs,
    },
    /// Move the patient in one bed to another, empty, bed.
    Transfer {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
    /// Discharge the patient in a bed.
    Discharge {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        bed: String,
    },
    /// Change an admitted patient's details or category (matched by MRN).
    Update {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        patient: PatientArgs,
    },
    /// Every bed and who is in it.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn patient(a: PatientArgs) -> anyhow::Result<Patient> {
    let sex =
        Sex::parse(&a.sex).ok_or_else(|| anyhow::anyhow!("--sex {:?}: use F, M, O or U", a.sex))?;
    let category = Category::parse(&a.category).ok_or_else(|| {
        anyhow::anyhow!(
            "--category {:?}: use adult, pediatric or neonatal",
            a.category
        )
    })?;
    let p = Patient {
        mrn: a.mrn,
        authority: a.authority,
        family: a.family,
        given: a.given,
        birth_date: a.birth_date,
        sex,
        category,
        visit: a.visit,
    };
    p.validate()?;
    Ok(p)
}

fn apply(config: &ConfigArg, op: Op) -> anyhow::Result<()> {
    let cfg = config.load()?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    let out = ward_core::patients::apply_offline(&cfg, &op, &console_actor())?;
    for e in &out.events {
        println!(
            "{} bed {}: {}",
            e.kind,
            e.bed,
            e.detail["patient"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

fn list(cfg: &Config, json: bool) -> anyhow::Result<()> {
    let beds: Vec<String> = cfg.beds.iter().map(|b| b.id.to_string()).collect();
    let census = ward_core::patients::list(&cfg.db_path(), &beds)?;
    for (bed, a) in census.beds() {
        if json {
            println!("{}", serde_json::json!({ "bed": bed, "admission": a }));
        } else {
            let line = a
                .map(|a| format!("{} ({})", a.line, a.source.as_str()))
                .unwrap_or_else(|| "no patient admitted".into());
            println!("{bed:<10} {line}");
        }
    }
    Ok(())
}

pub fn command(c: PatientsCommand) -> anyhow::Result<()> {
    match c {
        PatientsCommand::Admit {
            config,
            bed,
            patient: p,
        } => apply(
            &config,
            Op::Admit {
                bed,
                patient: patient(p)?,
            },
        ),
        PatientsCommand::Transfer { config, from, to } => apply(&config, Op::Transfer { from, to }),
        PatientsCommand::Discharge { config, bed } => apply(&config, Op::Discharge { bed }),
        PatientsCommand::Update { config, patient: p } => apply(
            &config,
            Op::Update {
                patient: patient(p)?,
            },
        ),
        PatientsCommand::List { config, json } => list(&config.load()?, json),
    }
}
