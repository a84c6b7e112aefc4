//! `caldicott sar …`: the subject access register and export from the command line, acting as a
//! named member of staff (their role is checked and every action audited as theirs). The files
//! are the same as the portal's: the same reviewed items give the same bytes.

use crate::governance::Who;
use anyhow::{bail, Context};
use caldicott_app::sar_export::{DecisionInput, ExportProgress};
use caldicott_app::{auth, App};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

#[derive(Subcommand)]
pub enum SarCommand {
    /// The register: every request with its due date, as JSON.
    List {
        #[command(flatten)]
        who: Who,
    },
    /// Logs a request received by the practice; prints it with its due date (R31).
    Log {
        #[command(flatten)]
        who: Who,
        #[arg(long)]
        nhs_number: String,
        #[arg(long)]
        requester: String,
        /// Who the requester is to the patient ("solicitor", "mother"); empty for the patient.
        #[arg(long, default_value = "")]
        relationship: String,
        /// The day it was received (YYYY-MM-DD).
        #[arg(long)]
        received: chrono::NaiveDate,
        /// "identity" or "clarification", if the practice is waiting for it.
        #[arg(long, default_value = "")]
        waiting_for: String,
    },
    /// Every item an export would hold, with why it is flagged and any decision, as JSON.
    Review {
        #[command(flatten)]
        who: Who,
        #[arg(long)]
        sar: Uuid,
        /// Only the flagged items.
        #[arg(long)]
        flagged: bool,
    },
    /// Records a decision on items (R33): release, or withhold with a ground and a reason.
    Decide {
        #[command(flatten)]
        who: Who,
        #[arg(long)]
        sar: Uuid,
        /// An item's key ("entry/…", "staff_message/…"); repeat for several.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// Withhold on this ground (third_party, serious_harm, other_exemption); without it, release.
        #[arg(long)]
        withhold: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Makes the release: the PDF (with the cover letter) and the FHIR R4 Bundle, written to
    /// a folder, readable only by the user running the command. Refused until every flagged
    /// item has a decision.
    Export {
        #[command(flatten)]
        who: Who,
        #[arg(long)]
        sar: Uuid,
        /// The folder to write to: new or empty (created if missing; files are never replaced).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Writes a new file only the owner can read; refuses to replace one.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

pub async fn run(app: &App, command: SarCommand) -> anyhow::Result<ExitCode> {
    match command {
        SarCommand::List { who } => {
            let me = auth::principal_for(app, &who.practice, &who.staff).await?;
            println!("{}", serde_json::to_string_pretty(&app.sar_register(&me).await?)?);
        }
        SarCommand::Log { who, nhs_number, requester, relationship, received, waiting_for } => {
            use chrono::Datelike;
            let me = auth::principal_for(app, &who.practice, &who.staff).await?;
            let input = caldicott_app::sar::NewSar {
                nhs_number,
                requester,
                relationship,
                day: received.day().to_string(),
                month: received.month().to_string(),
                year: received.year().to_string(),
                waiting_for,
                notes: String::new(),
            };
            match app.log_sar(&me, &input).await? {
                Ok(sar) => {
                    let row = app.sar_view(&me, sar.id).await?;
                    println!("{}", serde_json::to_string_pretty(&row)?);
                }
                Err(problems) => {
                    for p in problems {
                        eprintln!("{}: {}", p.field, p.message);
                    }
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        SarCommand::Review { who, sar, flagged } => {
            let me = auth::principal_for(app, &who.practice, &who.staff).await?;
            let review = app.sar_review(&me, sar).await?;
            let items: Vec<serde_json::Value> = review
                .items
                .iter()
                .filter(|i| !flagged || i.flagged())
                .map(|i| {
                    serde_json::json!({
                        "key": i.key,
                        "section": i.section,
                        "title": i.title,
                        "flags": i.flags,
                        "decision": review.decisions.get(&i.key),
                    })
                })
                .collect();
            let out = serde_json::json!({
                "items": items,
                "undecided": review.undecided,
                "withheld": review.withheld(),
                "blockers": review.blockers,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        SarCommand::Decide { who, sar, keys, withhold, reason } => {
            let me = auth::principal_for(app, &who.practice, &who.staff).await?;
            let input = DecisionInput {
                keys,
                decision: if withhold.is_some() { "withhold".into() } else { "release".into() },
                ground: withhold.unwrap_or_default(),
                reason,
            };
            match app.decide_sar_items(&me, sar, &input).await? {
                Ok(n) => eprintln!("Recorded {n} decision{}.", if n == 1 { "" } else { "s" }),
                Err(problems) => {
                    for p in problems {
                        eprintln!("{}: {}", p.field, p.message);
                    }
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        SarCommand::Export { who, sar, out } => {
            let me = auth::principal_for(app, &who.practice, &who.staff).await?;
            // Checked before anything is released, so that a release is never recorded without its files.
            if out.exists() && std::fs::read_dir(&out)?.next().is_some() {
                bail!("{} is not empty: give a new or empty folder (files are never replaced)", out.display());
            }
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let shown = bar.clone();
            let started = Instant::now();
            let trace = std::env::var_os("CALDICOTT_TRACE_MEMORY").is_some();
            let progress = Arc::new(move |p: ExportProgress| {
                if trace && p.done == 0 {
                    eprintln!("{}: peak {} MB", p.stage, peak_memory().unwrap_or(0) / 1024);
                }
                shown.set_message(p.stage);
                shown.set_length(p.total as u64);
                shown.set_position(p.done as u64);
            });
            let files = match app.export_sar(&me, sar, progress).await {
                Ok(f) => f,
                Err(caldicott_app::AppError::Conflict(why)) => {
                    bar.finish_and_clear();
                    eprintln!("{why}");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => bail!(e),
            };
            bar.finish_and_clear();
            let pdf = out.join(format!("{}.pdf", files.file_stem));
            let bundle = out.join(format!("{}.fhir.json", files.file_stem));
            write_private(&pdf, &files.pdf)?;
            write_private(&bundle, &files.bundle)?;
            println!("{}  {}", files.pdf_sha256, pdf.display());
            println!("{}  {}", files.bundle_sha256, bundle.display());
            eprintln!(
                "{} items released, {} withheld; made in {:.2} s{}. The release is recorded in the audit log.",
                files.released,
                files.withheld,
                started.elapsed().as_secs_f64(),
                peak_memory().map(|kb| format!(", peak memory {} MB", kb / 1024)).unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The process's peak resident memory in kB (Linux), for the benchmark.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
