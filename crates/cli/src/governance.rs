//! `caldicott report …`, `caldicott bulk-code …` and `caldicott staff add`: the governance pages
//! from the command line, acting as a named member of staff (their role is checked and every
//! action is audited as theirs).

use anyhow::{bail, Context};
use caldicott_app::capacity::{capacity_csv, icb_capacity_csv, Period};
use caldicott_app::governance::{icb_csv, monthly_return_csv, trend_csv, BulkInput};
use caldicott_app::{auth, App};
use caldicott_core::audit::{Actor, ActorKind};
use caldicott_core::practice::OdsCode;
use caldicott_core::staff::Role;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Args)]
pub struct Who {
    /// The practice's ODS code.
    #[arg(long)]
    pub practice: String,
    /// The member of staff acting (their role decides what they may do; the audit names them).
    #[arg(long = "as")]
    pub staff: String,
}

#[derive(Subcommand)]
pub enum ReportCommand {
    /// The share of registered patients aged 16+ with an active 104, the 50% flag and the
    /// action plan (R36).
    Exclusions {
        #[command(flatten)]
        who: Who,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// Every active exclusion: NHS number, date added, who added it (R37).
    MonthlyReturn {
        #[command(flatten)]
        who: Who,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
    /// Exclusions, grants and withholds by month.
    Trend {
        #[command(flatten)]
        who: Who,
        #[arg(long, default_value_t = 12)]
        months: u32,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
    /// Every practice's figures, for an ICB analyst: counts only.
    Icb {
        #[command(flatten)]
        who: Who,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
    /// Online appointment capacity by week, clinician and type: slots offered, offered online,
    /// booked online, by the practice and by other care settings, and did-not-attends by how
    /// they were booked (practice managers and administrators).
    Appointments {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        period: PeriodArgs,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
    /// Every practice's online appointment capacity totals, for an ICB analyst: counts only.
    IcbAppointments {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        period: PeriodArgs,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
}

#[derive(Args)]
pub struct PeriodArgs {
    /// The first week, by any of its dates (YYYY-MM-DD); weeks run Monday to Sunday. The
    /// default starts four weeks before this one.
    #[arg(long)]
    pub from: Option<String>,
    /// How many weeks, 1 to 26 (default 8).
    #[arg(long)]
    pub weeks: Option<String>,
}

impl PeriodArgs {
    fn period(&self, app: &App) -> anyhow::Result<Period> {
        Period::parse(self.from.as_deref(), self.weeks.as_deref(), app.today()).map_err(anyhow::Error::msg)
    }
}

#[derive(Args)]
pub struct BulkArgs {
    #[command(flatten)]
    pub who: Who,
    /// 104 (hold back automatic access) or 106 (undo 104).
    #[arg(long)]
    pub code: String,
    #[arg(long)]
    pub min_age: Option<u32>,
    #[arg(long)]
    pub max_age: Option<u32>,
    /// Only patients with this SNOMED CT concept in their record.
    #[arg(long)]
    pub has_code: Option<String>,
    /// Registered on or after (YYYY-MM-DD).
    #[arg(long)]
    pub registered_from: Option<String>,
    /// Registered on or before (YYYY-MM-DD).
    #[arg(long)]
    pub registered_to: Option<String>,
    /// A CSV file of NHS numbers (first column; a header line is allowed).
    #[arg(long)]
    pub csv: Option<std::path::PathBuf>,
    /// Apply the change: the number of patients the dry run said it changes. Without it,
    /// nothing is written.
    #[arg(long)]
    pub confirm: Option<String>,
    /// Undo this earlier bulk 104 (its id) with a bulk 106 instead.
    #[arg(long)]
    pub undo: Option<uuid::Uuid>,
}

#[derive(Args)]
pub struct PracticeAdd {
    /// The practice's ODS code.
    #[arg(long)]
    pub ods: String,
    /// Its name, as patients know it.
    #[arg(long)]
    pub name: String,
    /// The telephone number patients call.
    #[arg(long)]
    pub telephone: String,
    /// An address line (repeat for each line).
    #[arg(long = "address-line", required = true)]
    pub address_lines: Vec<String>,
    #[arg(long)]
    pub postcode: String,
}

/// `caldicott practice add`: a new practice, with the default online services settings (the
/// practice manager changes them in the portal). Audited.
pub async fn practice_add(app: &App, a: PracticeAdd) -> anyhow::Result<ExitCode> {
    let by = Actor { kind: ActorKind::System, id: "cli".into(), role: "operator".into() };
    let new = caldicott_app::setup::NewPractice {
        ods_code: a.ods.trim().to_owned(),
        name: a.name,
        telephone: a.telephone,
        address: caldicott_core::practice::PostalAddress {
            lines: a.address_lines.into_iter().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect(),
            postcode: a.postcode.trim().to_uppercase(),
        },
        online: Default::default(),
    };
    let code = OdsCode::parse(&new.ods_code)?;
    if app.practice_by_ods(&code).await?.is_some() {
        bail!("a practice with ODS code {code} is already here");
    }
    let made = caldicott_app::setup::create_practice(app, new, by).await?;
    println!(
        "{} ({}) is set up. Add its first practice manager with `caldicott staff add --practice {} --role practice_manager …`.",
        made.name, made.ods_code, made.ods_code
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct StaffAdd {
    /// The practice's ODS code (for an ICB analyst, the practice that holds the account).
    #[arg(long)]
    pub practice: String,
    #[arg(long)]
    pub username: String,
    #[arg(long)]
    pub name: String,
    /// receptionist, clinician, practice_manager, administrator or icb_analyst.
    #[arg(long)]
    pub role: String,
    /// The first password (at least 12 characters); taken from the environment so that it
    /// does not show in the process list.
    #[arg(long, env = "CALDICOTT_STAFF_PASSWORD", hide_env_values = true)]
    pub password: String,
}

fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn print(
    format: Format,
    csv: impl FnOnce() -> String,
    json: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    match format {
        Format::Csv => print!("{}", csv()),
        Format::Json => println!("{}", json()?),
    }
    Ok(())
}

pub async fn report(app: &App, command: ReportCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReportCommand::Exclusions { who, format } => {
            let me = auth::principal_for(app, &who.practice, &who.staff).await?;
            let started = Instant::now();
            let r = app.exclusion_report(&me).await?;
            eprintln!("Computed in {:.1} ms.", started.elapsed().as_secs_f64() * 1000.0);
            print(
                format,
                || {
                    let mut out = String::from(
                        "ods_code,registered_16_plus,active_104,percent_excluded,above_50_percent,action_plan\n",
                    );
                    out.push_str(&caldicott_app::governance::csv_line(&[
                        &r.ods_code,
                        &r.figures.registered_16_plus.to_string(),
                        &r.figures.active_104.to_string(),
                        r.percent.trim_end_matches('%'),
                        if r.needs_action_plan { "yes" } else { "no" },
                        if r.action_plan.is_some() { "yes" } else { "no" },
                    ]));
                    out
                },
                || Ok(serde_json::to_string_pretty(&r)?),
            )?;
        }
        ReportCommand::MonthlyReturn { who, format } => {
            let me = auth::principal_for(app, &who.practice, &who.staff).await?;
            let (on, rows) = app.monthly_return(&me).await?;
            print(
                format,
                || monthly_return_csv(&rows, on),
                || Ok(serde_json::to_string_pretty(&serde_json::json!({ "on": on, "exclusions": rows }))?),
            )?;
        }
        ReportCommand::Trend { who, months, format } => {
            let me = auth::principal_for(app, &who.practice, &who.staff).await?;
            let rows = app.exclusion_trend(&me, months).await?;
            print(format, || trend_csv(&rows), || Ok(serde_json::to_string_pretty(&rows)?))?;
        }
        ReportCommand::Icb { who, format } => {
            let me = auth::principal_for(app, &who.practice, &who.staff).await?;
            let bar = spinner("Counting exclusions across the service");
            let started = Instant::now();
            let (on, rows) = app.icb_figures(&me).await?;
            bar.finish_and_clear();
            eprintln!("Computed in {:.1} ms for {} practices.", started.elapsed().as_secs_f64() * 1000.0, rows.len());
            print(
                format,
                || icb_csv(&rows),
                || Ok(serde_json::to_string_pretty(&serde_json::json!({ "on": on, "practices": rows }))?),
            )?;
        }
        ReportCommand::Appointments { who, period, format } => {
            let me = auth::principal_for(app, &who.practice, &who.staff).await?;
            let report = app.capacity_report(&me, period.period(app)?).await?;
            print(format, || capacity_csv(&report), || Ok(serde_json::to_string_pretty(&report)?))?;
        }
        ReportCommand::IcbAppointments { who, period, format } => {
            let me = auth::principal_for(app, &who.practice, &who.staff).await?;
            let period = period.period(app)?;
            let rows = app.icb_capacity(&me, period).await?;
            print(
                format,
                || icb_capacity_csv(&period, &rows),
                || Ok(serde_json::to_string_pretty(&serde_json::json!({ "period": period, "practices": rows }))?),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn bulk_code(app: &App, a: BulkArgs) -> anyhow::Result<ExitCode> {
    let me = auth::principal_for(app, &a.who.practice, &a.who.staff).await?;
    if let Some(job) = a.undo {
        let (original, patients) = app.bulk_undo_preview(&me, job).await?;
        eprintln!(
            "Undoing the bulk 104 of {} ({}): 106 for {} patients whose 104 is still in force.",
            original.applied_at,
            original.cohort,
            patients.len()
        );
        let Some(typed) = a.confirm else {
            eprintln!("Nothing was changed. To apply, run again with --confirm {}", patients.len());
            return Ok(ExitCode::from(2));
        };
        let bar = spinner(&format!("Recording 106 for {} patients", patients.len()));
        let started = Instant::now();
        let done = app.bulk_undo(&me, job, &typed).await?;
        bar.finish_and_clear();
        return match done {
            Ok(r) => {
                println!("{}", serde_json::to_string_pretty(&r.job)?);
                eprintln!("Done in {:.2} s.", started.elapsed().as_secs_f64());
                Ok(ExitCode::SUCCESS)
            }
            Err(problems) => {
                for p in problems {
                    eprintln!("{}: {}", p.field, p.message);
                }
                Ok(ExitCode::FAILURE)
            }
        };
    }
    let csv = match &a.csv {
        None => String::new(),
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    };
    let input = BulkInput {
        code: a.code,
        min_age: a.min_age.map(|v| v.to_string()).unwrap_or_default(),
        max_age: a.max_age.map(|v| v.to_string()).unwrap_or_default(),
        has_code: a.has_code.unwrap_or_default(),
        registered_from: a.registered_from.unwrap_or_default(),
        registered_to: a.registered_to.unwrap_or_default(),
        csv,
    };
    let bar = spinner("Selecting the patients");
    let preview = app.bulk_preview(&me, &input).await?;
    bar.finish_and_clear();
    let preview = match preview {
        Ok(p) => p,
        Err(problems) => {
            for p in problems {
                eprintln!("{}: {}", p.field, p.message);
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &preview.warnings {
        eprintln!("WARNING: {w}");
    }
    eprintln!(
        "{} would be recorded for {} patients ({}); {} left as they are; {} NHS numbers not registered here; {} already use online services.",
        preview.code.short(),
        preview.count,
        preview.description,
        preview.unchanged,
        preview.not_registered.len(),
        preview.with_online_account
    );
    let Some(typed) = a.confirm else {
        println!("{}", serde_json::to_string_pretty(&preview)?);
        eprintln!("Nothing was changed (a dry run). To apply, run again with --confirm {}", preview.count);
        return Ok(ExitCode::from(2));
    };
    let bar = ProgressBar::new(preview.count as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} Coding {len} patients in one transaction ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let done = app.bulk_apply(&me, &input, &typed).await?;
    bar.finish_and_clear();
    match done {
        Ok(r) => {
            println!("{}", serde_json::to_string_pretty(&r.job)?);
            eprintln!(
                "Done in {:.2} s: {} patients, one audit event each.",
                started.elapsed().as_secs_f64(),
                r.job.patients
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for p in problems {
                eprintln!("{}: {}", p.field, p.message);
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn staff_add(app: &App, a: StaffAdd) -> anyhow::Result<ExitCode> {
    let Some(role) = Role::parse(&a.role) else {
        bail!("unknown role {:?}; use receptionist, clinician, practice_manager, administrator or icb_analyst", a.role)
    };
    let ods = OdsCode::parse(&a.practice)?;
    let Some(practice) = app.practice_by_ods(&ods).await? else { bail!("no practice with ODS code {ods}") };
    let by = Actor { kind: ActorKind::System, id: "cli".into(), role: "operator".into() };
    let made =
        caldicott_app::setup::create_staff(app, practice.id, &a.username, &a.name, role, &a.password, by).await?;
    println!(
        "{} ({}) can now sign in at {}; they enrol an authenticator at their first sign-in.",
        made.username,
        role.display(),
        ods
    );
    Ok(ExitCode::SUCCESS)
}
