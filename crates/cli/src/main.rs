//! `caldicott`: one binary for the server, the demo practice, migrations, API tokens and the
//! audit log. Configuration is parsed here once and passed down explicitly.

mod backup;
mod config;
mod governance;
mod safety;
mod sar;
mod server;

use anyhow::{bail, Context};
use caldicott_app::{auth, system_clock, App};
use caldicott_core::audit::{ChainHash, ChainHead};
use caldicott_core::practice::{OdsCode, Practice};
use caldicott_demo::{build_demo, DemoOptions, DemoReport};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;

// The server allocates many small buffers across threads; mimalloc handles that with far less
// contention than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "caldicott", version, about = "GP online services, run safely by the practice")]
struct Cli {
    /// How log lines are written to standard error: `text` (for people; coloured only on a
    /// terminal) or `json` (one JSON object a line, for a log collector).
    #[arg(long, global = true, env = "CALDICOTT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// A configuration file (TOML; docs/operations.md lists its settings). A flag or an
    /// environment variable overrides what the file says.
    #[arg(long, global = true, env = "CALDICOTT_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Clone)]
pub(crate) struct Db {
    /// The database: an SQLite file path (or sqlite: URL), or a postgres:// URL. Taken wherever
    /// it is written on the command line (`caldicott report exclusions --database …`).
    #[arg(
        long,
        global = true,
        env = "CALDICOTT_DATABASE",
        default_value = "data/caldicott.db",
        hide_env_values = true
    )]
    database: String,
    /// The key that seals authenticator secrets in the database (32 random bytes, hex), kept
    /// outside it; made if missing. Default: `<database>.key` beside an SQLite file,
    /// `caldicott-secret.key` in the working folder for PostgreSQL.
    #[arg(long, global = true, env = "CALDICOTT_SECRET_KEY_FILE")]
    secret_key_file: Option<std::path::PathBuf>,
}

impl Db {
    /// Where the secret key is.
    fn key_file(&self) -> std::path::PathBuf {
        if let Some(p) = &self.secret_key_file {
            return p.clone();
        }
        if caldicott_store::is_postgres(&self.database) {
            return std::path::PathBuf::from("caldicott-secret.key");
        }
        let mut key = caldicott_store::sqlite_path(&self.database).into_os_string();
        key.push(".key");
        std::path::PathBuf::from(key)
    }
}

#[derive(Args, Clone)]
pub(crate) struct Listen {
    /// The address to listen on.
    #[arg(long, env = "CALDICOTT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A folder where a mailbox transport delivers GP Connect Update Record messages, one
    /// sub-folder per practice ODS code; it is read every two seconds.
    #[arg(long, env = "CALDICOTT_UPDATE_RECORD_INBOX")]
    update_record_inbox: Option<std::path::PathBuf>,
    /// The one public URL the service is reached at (https://gp.example.nhs.uk): the FHIR token
    /// endpoint's audience, the SMART configuration and FHIR links are made from it, never from
    /// a request's Host or X-Forwarded-* headers. Default: http://<the bound address>.
    #[arg(long, env = "CALDICOTT_PUBLIC_URL")]
    public_url: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key. The files are read again
    /// when they change, and every answer carries HSTS.
    #[arg(long, env = "CALDICOTT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "CALDICOTT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Connections open at once; more are closed at once.
    #[arg(long, env = "CALDICOTT_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client may take to send a request's headers (and the TLS handshake).
    #[arg(long, env = "CALDICOTT_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a whole request may take.
    #[arg(long, env = "CALDICOTT_REQUEST_TIMEOUT", default_value_t = 120)]
    request_timeout_secs: u64,
    /// Serve `/metrics` (Prometheus text format) on this address of its own, open to whoever
    /// reaches it: bind it to loopback or the monitoring network only.
    #[arg(long, env = "CALDICOTT_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Serve `/metrics` on the service's own address too, to callers that send
    /// `Authorization: Bearer <this token>` (at least 32 characters).
    #[arg(long, env = "CALDICOTT_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Serve GP Connect (Access Record: Structured) to the Spine Secure Proxy on this address of
    /// its own, over TLS with client certificates: needs --spine-tls-cert, --spine-tls-key and
    /// --spine-client-ca. Only callers with a certificate from that authority get an answer.
    #[arg(long, env = "CALDICOTT_SPINE_LISTEN", requires_all = ["spine_tls_cert", "spine_tls_key", "spine_client_ca"])]
    spine_listen: Option<SocketAddr>,
    /// The Spine listener's certificate chain (PEM), issued for this service's endpoint.
    #[arg(long, env = "CALDICOTT_SPINE_TLS_CERT", requires = "spine_listen")]
    spine_tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --spine-tls-cert.
    #[arg(long, env = "CALDICOTT_SPINE_TLS_KEY", requires = "spine_listen")]
    spine_tls_key: Option<std::path::PathBuf>,
    /// The certificate authority (PEM) whose client certificates the Spine listener accepts: the
    /// Spine's (NHS England's SubCA and RootCA), never a public one.
    #[arg(long, env = "CALDICOTT_SPINE_CLIENT_CA", requires = "spine_listen")]
    spine_client_ca: Option<std::path::PathBuf>,
    /// Take a backup into this folder every --backup-every hours, verify it, and keep the newest
    /// --backup-keep.
    #[arg(long, env = "CALDICOTT_BACKUP_DIR")]
    backup_dir: Option<std::path::PathBuf>,
    /// Hours between scheduled backups (fractions allowed: 0.25 is every 15 minutes).
    #[arg(long, env = "CALDICOTT_BACKUP_EVERY", default_value_t = 24.0)]
    backup_every: f64,
    /// How many scheduled backups to keep.
    #[arg(long, env = "CALDICOTT_BACKUP_KEEP", default_value_t = 14)]
    backup_keep: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        db: Db,
        #[command(flatten)]
        listen: Listen,
    },
    /// Build the demo practice (if it is not there yet) and run the server.
    Demo {
        #[command(flatten)]
        db: Db,
        #[command(flatten)]
        listen: Listen,
        /// How many patients the demo practice has.
        #[arg(long, default_value_t = 2000)]
        patients: u32,
        /// The seed: the same seed and date give the same practice.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The date the demo is built as of (default: today).
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// Add one patient with a record of this many entries.
        #[arg(long)]
        long_record: Option<u32>,
        /// Build the demo practice and exit, without serving.
        #[arg(long)]
        build_only: bool,
        /// Also build this many lean practices (Y00001…) for the ICB view: patients and their
        /// 104/106 codes only; every tenth is over the 50% line.
        #[arg(long, default_value_t = 0)]
        practices: u32,
        /// Patients in each of those practices.
        #[arg(long, default_value_t = 10_000)]
        practice_patients: u32,
        /// Serve the demo as if it were this many days later, to see what time does (a child
        /// reaching the proxy review age, end dates, overdue alerts). Demo only.
        #[arg(long, default_value_t = 0)]
        days_ahead: u32,
    },
    /// Take a consistent backup of the database while the server runs (SQLite: a copy made in
    /// one read transaction; PostgreSQL: pg_dump in one snapshot), with every practice's audit
    /// chain head in its manifest, and verify it before saying it is done.
    Backup {
        #[command(flatten)]
        db: Db,
        /// The file to write (written beside it and moved into place when complete).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Restore a backup onto --database: checks the file, refuses a database that already holds
    /// caldicott data unless --force, runs the migrations, checks integrity and verifies every
    /// practice's audit chain against the heads recorded with the backup.
    Restore {
        #[command(flatten)]
        db: Db,
        /// The backup file.
        file: std::path::PathBuf,
        /// Replace a database that holds caldicott data (stop its server first).
        #[arg(long)]
        force: bool,
    },
    /// The configuration file, environment and flags, together.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Bring the database schema up to date and exit.
    Migrate {
        #[command(flatten)]
        db: Db,
    },
    /// API tokens for staff.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The key that seals authenticator secrets in the database.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Governance reports (CSV or JSON), as on the reports pages.
    Report {
        #[command(flatten)]
        db: Db,
        #[command(subcommand)]
        command: governance::ReportCommand,
    },
    /// Record 104 or 106 for a cohort. A dry run unless --confirm gives the number of patients.
    BulkCode {
        #[command(flatten)]
        db: Db,
        #[command(flatten)]
        args: governance::BulkArgs,
    },
    /// Subject access requests: the register, the review and the export (PDF and FHIR).
    Sar {
        #[command(flatten)]
        db: Db,
        #[command(subcommand)]
        command: sar::SarCommand,
    },
    /// Practices served here.
    Practice {
        #[command(subcommand)]
        command: PracticeCommand,
    },
    /// Staff accounts.
    Staff {
        #[command(subcommand)]
        command: StaffCommand,
    },
    /// Helpers for the FHIR API's clients.
    Fhir {
        #[command(subcommand)]
        command: FhirCommand,
    },
    /// The clinical safety case (DCB0129): check the hazard log against a test run, write the
    /// safety case report, and check that changes to hazard-carrying code touched the log.
    Safety {
        #[command(subcommand)]
        command: SafetyCommand,
    },
    /// Print what each staff role may do, as the table every use case checks (Markdown; it is
    /// kept in docs/permissions.md).
    Permissions,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check the settings `serve` would start with: prints each and where it came from (secrets
    /// are not shown), reaches the database without changing it, and fails naming each problem.
    Check {
        #[command(flatten)]
        db: Db,
        #[command(flatten)]
        listen: Listen,
    },
}

#[derive(Subcommand)]
enum SafetyCommand {
    /// Fail, naming each hazard, when a control's test is missing, did not run, was ignored or
    /// failed, when a hazard above the acceptance line has no tested control, or when a residual
    /// risk at the line has no justification.
    Check {
        /// cargo test's output for the run (scripts/test.sh keeps it).
        #[arg(long)]
        results: std::path::PathBuf,
        /// The repository's root.
        #[arg(long, default_value = ".")]
        root: std::path::PathBuf,
    },
    /// Write the Clinical Safety Case Report (Markdown and tagged PDF) from the log and a run.
    Report {
        #[arg(long)]
        results: std::path::PathBuf,
        /// The folder to write safety-case-report.md and safety-case-report.pdf into.
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long, default_value = ".")]
        root: std::path::PathBuf,
    },
    /// Fail when files changed since the hazard log last changed carry hazards (their `watch`
    /// paths), naming the hazards to review.
    Changes {
        /// Compare with this commit instead of the log's last change.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value = ".")]
        root: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum FhirCommand {
    /// Print a client assertion (a signed JWT, good once for five minutes) for a practice
    /// integration, as its own software would make one, to swap at the token endpoint.
    Assertion {
        /// The integration's client id (`int_…`, from the Integrations page).
        #[arg(long)]
        client_id: String,
        /// Its private key, PEM (elliptic curve P-384 signs ES384; RSA signs RS384).
        #[arg(long)]
        key: std::path::PathBuf,
        /// The token endpoint the assertion is for (its `aud`).
        #[arg(long, default_value = "http://127.0.0.1:8080/fhir/r4/token")]
        token_url: String,
    },
}

#[derive(Subcommand)]
enum PracticeCommand {
    /// Add a practice (audited); then add its first practice manager with `staff add`.
    Add {
        #[command(flatten)]
        db: Db,
        #[command(flatten)]
        args: governance::PracticeAdd,
    },
}

#[derive(Subcommand)]
enum StaffCommand {
    /// Add a member of staff (the only way to make an ICB analyst's account).
    Add {
        #[command(flatten)]
        db: Db,
        #[command(flatten)]
        args: governance::StaffAdd,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Make a new key and seal every stored secret again under it, in one transaction; the
    /// previous key is kept as `<key>.old`. Safe to run again if cut off.
    Rotate {
        #[command(flatten)]
        db: Db,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a bearer token to a member of staff; it is printed once and stored only as a hash.
    Create {
        #[command(flatten)]
        db: Db,
        /// The practice's ODS code.
        #[arg(long)]
        practice: String,
        /// The staff member's username.
        #[arg(long)]
        staff: String,
        /// What the token is for.
        #[arg(long, default_value = "api")]
        label: String,
        /// Days until it expires (1 to 366).
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
    /// List the practice's tokens: id, label, owner, created, expires, status (never a secret).
    List {
        #[command(flatten)]
        db: Db,
        /// The practice's ODS code.
        #[arg(long, visible_alias = "ods")]
        practice: String,
    },
    /// Revoke a token: its next request is refused. Audited.
    Revoke {
        #[command(flatten)]
        db: Db,
        /// The practice's ODS code.
        #[arg(long, visible_alias = "ods")]
        practice: String,
        /// The token's id (from `caldicott token list`).
        token: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every practice's audit chain (or one), naming the first bad event.
    Verify {
        #[command(flatten)]
        db: Db,
        /// Only this practice (ODS code).
        #[arg(long)]
        practice: Option<String>,
        /// A file of checkpoints written earlier by `caldicott audit checkpoint`; also catches
        /// events cut off the end and whole rewrites.
        #[arg(long)]
        checkpoint: Option<std::path::PathBuf>,
    },
    /// Print each practice's chain head (count and hash) as JSON lines, to keep elsewhere.
    Checkpoint {
        #[command(flatten)]
        db: Db,
        #[arg(long)]
        practice: Option<String>,
    },
}

fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter: Targets = std::env::var("CALDICOTT_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO).with_target("sqlx", tracing::Level::WARN));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        // Colour codes only where a person reads them: a log file or a pipe gets plain text.
        LogFormat::Text => {
            tracing_subscriber::registry().with(layer.with_ansi(std::io::stderr().is_terminal())).with(filter).init()
        }
        LogFormat::Json => tracing_subscriber::registry().with(layer.json().flatten_event(true)).with(filter).init(),
    }
}

fn main() -> ExitCode {
    // The configuration file first, before any thread starts: its settings become environment
    // variables (unless already set), which the command line then falls back on.
    let args: Vec<String> = std::env::args().collect();
    if let Some(path) = config::path_in(&args) {
        match config::apply(&path) {
            Ok(applied) => {
                let _ = config::FROM_FILE.set((path, applied));
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn safety_command(command: SafetyCommand) -> anyhow::Result<ExitCode> {
    let read_results = |path: &std::path::Path| -> anyhow::Result<safety::Results> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the test results {}", path.display()))?;
        Ok(safety::Results::parse(&text))
    };
    match command {
        SafetyCommand::Check { results, root } => {
            let log = safety::load(&root)?;
            let run = read_results(&results)?;
            let problems = safety::check(&root, &log, &run, &safety::Sources::scan(&root));
            let c = safety::counts(&log, &run);
            if problems.is_empty() {
                println!(
                    "Safety gate passed: {} hazards, {} controls, {} tests linked, all of them passed.",
                    c.hazards, c.controls, c.tests
                );
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("The safety gate failed: {} problems in {}", problems.len(), safety::LOG_PATH);
            for p in &problems {
                eprintln!("  {p}");
            }
            eprintln!("Fix the test, or review the hazard and its controls with the Clinical Safety Officer.");
            Ok(ExitCode::FAILURE)
        }
        SafetyCommand::Report { results, out, root } => {
            let log = safety::load(&root)?;
            let run = read_results(&results)?;
            let problems = safety::check(&root, &log, &run, &safety::Sources::scan(&root));
            let md = safety::report_markdown(&log, &run, &problems, &safety::Run::of(&root, &results));
            std::fs::create_dir_all(&out).with_context(|| format!("making {}", out.display()))?;
            std::fs::write(out.join("safety-case-report.md"), &md)?;
            std::fs::write(out.join("safety-case-report.pdf"), safety::report_pdf(&md)?)?;
            println!("Wrote {0}/safety-case-report.md and {0}/safety-case-report.pdf", out.display());
            Ok(ExitCode::SUCCESS)
        }
        SafetyCommand::Changes { since, root } => {
            let log = safety::load(&root)?;
            let Some(changed) = safety::changed_since_log(&root, since.as_deref())? else {
                println!("The hazard log has uncommitted changes: it is being reviewed with this change.");
                return Ok(ExitCode::SUCCESS);
            };
            let touched = safety::hazards_touched(&log, &changed);
            if touched.is_empty() {
                println!("No change since the hazard log's last review touches code that carries a hazard.");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "These changes touch code that carries clinical hazards, and {} was not updated with them.",
                safety::LOG_PATH
            );
            eprintln!("Review each hazard below, update its controls and tests, and add a [[review]] entry:");
            for (h, paths) in touched {
                eprintln!("  {} {} — {}", h.id, h.title, paths.join(", "));
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn open(db: &Db) -> anyhow::Result<App> {
    let store = caldicott_store::open(&db.database)
        .await
        .with_context(|| format!("opening the database {}", caldicott_store::redact_url(&db.database)))?;
    let key = db.key_file();
    let (keyring, created) = caldicott_app::secrets::Keyring::from_file(&key).map_err(|e| anyhow::anyhow!(e))?;
    if created {
        tracing::warn!(key = %key.display(), "a new secret key was made: keep it safe and apart from database backups");
    }
    let mut app = App::new(store, system_clock()).with_secrets(keyring);
    if let Ok(token) = std::env::var("CALDICOTT_NOTIFY_CALLBACK_TOKEN") {
        if token.len() >= 16 {
            app = app.with_notify_callback_token(&token);
        } else {
            anyhow::bail!("CALDICOTT_NOTIFY_CALLBACK_TOKEN must be at least 16 characters");
        }
    }
    // Patients can also sign in with NHS login when the provider is configured.
    Ok(match caldicott_adapters::nhs_login::OidcConfig::from_env() {
        None => app,
        Some(config) => {
            let config = config.map_err(|e| anyhow::anyhow!(e))?;
            tracing::info!(issuer = %config.issuer, "patients can sign in with NHS login");
            app.with_nhs_login(caldicott_adapters::nhs_login::NhsLogin::new(config).map_err(|e| anyhow::anyhow!(e))?)
        }
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { db, listen } => {
            let app = open(&db).await?;
            serve(app, &db, &listen, None).await?;
        }
        Command::Demo {
            db,
            listen,
            patients,
            seed,
            as_of,
            long_record,
            build_only,
            days_ahead,
            practices,
            practice_patients,
        } => {
            let mut app = open(&db).await?;
            let as_of = as_of.unwrap_or_else(|| caldicott_core::uk::uk_date(chrono::Utc::now()));
            eprintln!("Preparing the demo practice ({patients} patients, seed {seed}) …");
            let report = build_demo(&app, &DemoOptions { patients, seed, as_of, long_record }).await?;
            if practices > 0 {
                let password = caldicott_demo::demo_passwords(seed)[4].clone();
                let bar = indicatif::ProgressBar::new(u64::from(practices));
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} practices of {msg} patients ({elapsed}, about {eta} to go)",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar.set_message(practice_patients.to_string());
                let tick = bar.clone();
                let started = std::time::Instant::now();
                let built = caldicott_demo::icb::build_service(
                    &app,
                    practices,
                    practice_patients,
                    seed,
                    as_of,
                    &password,
                    &move |n| tick.set_position(u64::from(n)),
                )
                .await?;
                bar.finish_and_clear();
                eprintln!(
                    "Service practices Y00001–{}: {built} built in {:.0} s; each has practice manager \"{}\" with password {password}",
                    caldicott_demo::icb::service_ods(practices),
                    started.elapsed().as_secs_f64(),
                    caldicott_demo::icb::SERVICE_MANAGER
                );
            }
            let key_file = write_demo_key(&db, &report)?;
            if build_only {
                print_demo(&report, None, key_file.as_deref());
            } else {
                if days_ahead > 0 {
                    eprintln!("Serving as if it were {days_ahead} days from now.");
                    let ahead = chrono::Duration::days(i64::from(days_ahead));
                    app = app.with_clock(std::sync::Arc::new(move || chrono::Utc::now() + ahead));
                }
                let token = auth::issue_token(
                    &app,
                    report.practice.ods_code.as_str(),
                    "dr.okafor",
                    "demo",
                    chrono::Duration::hours(12),
                )
                .await?;
                let public_url = listen.public_url.clone().unwrap_or_else(|| format!("http://{}", listen.listen));
                let public_url = caldicott_app::parse_public_url(&public_url)?;
                print_demo(&report, Some((&token.secret, &public_url)), key_file.as_deref());
                serve(app, &db, &listen, Some(&report)).await?;
            }
        }
        Command::Report { db, command } => return governance::report(&open(&db).await?, command).await,
        Command::BulkCode { db, args } => return governance::bulk_code(&open(&db).await?, args).await,
        Command::Sar { db, command } => return sar::run(&open(&db).await?, command).await,
        Command::Practice { command: PracticeCommand::Add { db, args } } => {
            return governance::practice_add(&open(&db).await?, args).await
        }
        Command::Staff { command: StaffCommand::Add { db, args } } => {
            return governance::staff_add(&open(&db).await?, args).await
        }
        Command::Safety { command } => return safety_command(command),
        Command::Permissions => {
            print!("{}", caldicott_core::permissions::render_markdown());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Fhir { command: FhirCommand::Assertion { client_id, key, token_url } } => {
            let pem = std::fs::read_to_string(&key).with_context(|| format!("reading {}", key.display()))?;
            let assertion =
                caldicott_app::fhir_api::client_assertion(&client_id, &pem, &token_url, chrono::Utc::now())?;
            println!("{assertion}");
        }
        Command::Backup { db, out } => {
            let started = std::time::Instant::now();
            let manifest = backup::take(&db.database, &out).await?;
            print!("{}", backup::describe(&manifest));
            println!(
                "Backup written to {} and verified in {:.1} s. The secret key ({}) is not in it: keep a copy \
                 of the key apart from the backups.",
                out.display(),
                started.elapsed().as_secs_f64(),
                db.key_file().display()
            );
        }
        Command::Restore { db, file, force } => {
            let started = std::time::Instant::now();
            let manifest = backup::restore(&file, &db.database, force).await?;
            print!("{}", backup::describe(&manifest));
            println!(
                "Restored onto {} in {:.1} s: schema up to date, integrity checked, every audit chain verified \
                 against the backup. The server needs the secret key the backed-up service used at {}.",
                caldicott_store::redact_url(&db.database),
                started.elapsed().as_secs_f64(),
                db.key_file().display()
            );
        }
        Command::Config { command: ConfigCommand::Check { db, listen } } => return config::check(&db, &listen).await,
        Command::Migrate { db } => {
            open(&db).await?;
            println!("The database schema is up to date.");
        }
        Command::Secrets { command: SecretsCommand::Rotate { db } } => {
            let app = open(&db).await?;
            let key = db.key_file();
            let done = app.rotate_secrets(&key).await.map_err(|e| anyhow::anyhow!(e))?;
            println!(
                "{} secret(s) sealed again under a new key in {}. The previous key is in {}: delete it once no \
                 backup made before now is needed.",
                done.resealed,
                key.display(),
                done.old_key.display()
            );
        }
        Command::Token { command: TokenCommand::Create { db, practice, staff, label, days } } => {
            let app = open(&db).await?;
            let issued = auth::issue_token(&app, &practice, &staff, &label, chrono::Duration::days(days)).await?;
            eprintln!(
                "Token for {staff} at {practice}, valid until {} (keep it secret; it is not shown again):",
                issued.token.expires_at
            );
            println!("{}", issued.secret);
        }
        Command::Token { command: TokenCommand::List { db, practice } } => {
            let app = open(&db).await?;
            let now = chrono::Utc::now();
            println!("{:<36}  {:<8}  {:<20}  {:<20}  {:<20}  label", "id", "status", "owner", "created", "expires");
            for t in auth::list_tokens(&app, &practice).await? {
                println!(
                    "{:<36}  {:<8}  {:<20}  {:<20}  {:<20}  {}",
                    t.token.id,
                    t.status_at(now),
                    t.owner_username,
                    t.token.created_at.format("%Y-%m-%d %H:%M UTC"),
                    t.token.expires_at.format("%Y-%m-%d %H:%M UTC"),
                    t.token.label
                );
            }
        }
        Command::Token { command: TokenCommand::Revoke { db, practice, token } } => {
            let app = open(&db).await?;
            auth::revoke_token(&app, &practice, &token).await?;
            println!("Token {token} at {practice} is revoked: its next request is refused.");
        }
        Command::Audit { command: AuditCommand::Verify { db, practice, checkpoint } } => {
            let app = open(&db).await?;
            let checkpoints = match checkpoint {
                None => Vec::new(),
                Some(path) => read_checkpoints(&path)?,
            };
            let mut broken = false;
            for p in practices(&app, practice.as_deref()).await? {
                let mine: Vec<ChainHead> =
                    checkpoints.iter().filter(|(ods, _)| ods == p.ods_code.as_str()).map(|(_, h)| *h).collect();
                match app.verify_audit_chain(p.id, &mine).await? {
                    Ok(head) => println!(
                        "{} {}: audit chain intact: {} events, head {}{}",
                        p.ods_code,
                        p.name,
                        head.count,
                        head.hash.to_hex(),
                        if mine.is_empty() {
                            String::new()
                        } else {
                            format!(" (matches {} checkpoint(s))", mine.len())
                        }
                    ),
                    Err(b) => {
                        broken = true;
                        println!("{} {}: AUDIT CHAIN BROKEN at event {}: {b}", p.ods_code, p.name, b.first_bad());
                    }
                }
            }
            return Ok(if broken { ExitCode::FAILURE } else { ExitCode::SUCCESS });
        }
        Command::Audit { command: AuditCommand::Checkpoint { db, practice } } => {
            let app = open(&db).await?;
            for p in practices(&app, practice.as_deref()).await? {
                let head = app.audit_head(p.id).await?;
                println!(
                    "{}",
                    serde_json::json!({ "practice": p.ods_code.as_str(), "count": head.count, "hash": head.hash.to_hex(), "at": chrono::Utc::now().to_rfc3339() })
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn practices(app: &App, ods: Option<&str>) -> anyhow::Result<Vec<Practice>> {
    match ods {
        None => Ok(app.practices().await?),
        Some(code) => {
            let code = OdsCode::parse(code)?;
            match app.practice_by_ods(&code).await? {
                Some(p) => Ok(vec![p]),
                None => bail!("no practice with ODS code {code}"),
            }
        }
    }
}

fn read_checkpoints(path: &std::path::Path) -> anyhow::Result<Vec<(String, ChainHead)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("line {} of {}", i + 1, path.display()))?;
            let ods = v["practice"].as_str().context("a checkpoint needs \"practice\"")?.to_owned();
            let count = v["count"].as_i64().context("a checkpoint needs \"count\"")?;
            let hash = v["hash"]
                .as_str()
                .and_then(ChainHash::from_hex)
                .context("a checkpoint needs a 64-hex-digit \"hash\"")?;
            Ok((ods, ChainHead { count, hash }))
        })
        .collect()
}

/// The demo integration's private key, written owner-only beside the SQLite database (or in the
/// current folder for PostgreSQL), so that `caldicott fhir assertion` can sign with it.
fn write_demo_key(db: &Db, report: &DemoReport) -> anyhow::Result<Option<std::path::PathBuf>> {
    let Some((_, key)) = &report.integration else { return Ok(None) };
    let dir = if caldicott_store::is_postgres(&db.database) {
        std::path::PathBuf::from(".")
    } else {
        caldicott_store::sqlite_path(&db.database)
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| ".".into())
    };
    let path = dir.join("demo-integration-key.pem");
    std::fs::write(&path, key).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(Some(path))
}

fn print_demo(report: &DemoReport, serving: Option<(&str, &str)>, key_file: Option<&std::path::Path>) {
    let p = &report.practice;
    println!();
    println!(
        "{} ({}) — {} patients{}",
        p.name,
        p.ods_code,
        report.patients,
        if report.built { ", just built" } else { "" }
    );
    println!();
    println!("Demo staff (username / password / role):");
    for s in &report.staff {
        println!("  {:<12} {:<28} {}", s.username, s.password, s.role.display());
    }
    println!();
    println!("Demo patients, at /my/sign-in (username / password):");
    for l in &report.patient_logins {
        println!(
            "  {:<14} {:<28} NHS number {}, born {}. {}",
            l.username, l.password, l.nhs_number, l.birth_date, l.about
        );
    }
    println!();
    println!(
        "Pharmacy {} posts Update Record messages to /api/update-record/v1/messages with client id {} and secret {}",
        report.pharmacy.0, report.pharmacy.1, report.pharmacy.2
    );
    if let (Some((client_id, _)), Some(key)) = (&report.integration, key_file) {
        let token_url = match serving {
            Some((_, public_url)) => format!("{public_url}/fhir/r4/token"),
            None => "http://127.0.0.1:8080/fhir/r4/token".to_owned(),
        };
        println!();
        println!(
            "FHIR integration \"{}\" (system/*.read): client id {client_id}, private key in {}",
            caldicott_demo::services::DEMO_INTEGRATION,
            key.display()
        );
        println!(
            "  A=$(caldicott fhir assertion --client-id {client_id} --key {} --token-url {token_url})",
            key.display()
        );
        println!(
            "  curl -d grant_type=client_credentials -d client_assertion_type={} -d client_assertion=$A {token_url}",
            caldicott_app::fhir_api::ASSERTION_TYPE
        );
    }
    if let Some(nhs) = &report.long_record {
        println!();
        println!("Long record: NHS number {}", nhs.as_str());
    }
    if let Some((token, addr)) = serving {
        println!();
        println!("API token for dr.okafor (valid 12 hours):");
        println!("  {token}");
        println!();
        println!("Open {addr}/ — try:");
        println!("  curl -H \"Authorization: Bearer {token}\" {addr}/api/v1/patients/<nhs number>/online-view");
    }
    println!();
}

async fn serve(app: App, db: &Db, listen: &Listen, _demo: Option<&DemoReport>) -> anyhow::Result<()> {
    let addr = listen.listen;
    if listen.metrics_token.as_ref().is_some_and(|t| t.len() < 32) {
        bail!("--metrics-token (CALDICOTT_METRICS_TOKEN) must be at least 32 characters");
    }
    let schedule = match &listen.backup_dir {
        None => None,
        Some(dir) => {
            if !(listen.backup_every.is_finite() && listen.backup_every > 0.0) {
                bail!("--backup-every must be a number of hours above 0");
            }
            std::fs::create_dir_all(dir).with_context(|| format!("making the backup folder {}", dir.display()))?;
            Some(backup::Schedule {
                dir: dir.clone(),
                every: std::time::Duration::from_secs_f64(listen.backup_every * 3600.0),
                keep: listen.backup_keep.max(1),
            })
        }
    };
    let metrics = caldicott_web::metrics::install();
    let inbox = listen.update_record_inbox.clone();
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let scheme = if listen.tls_cert.is_some() { "https" } else { "http" };
    let public_url = listen.public_url.clone().unwrap_or_else(|| format!("{scheme}://{bound}"));
    let app = app.with_public_url(&public_url)?;
    tracing::info!(public_url = %app.public_url(), "links, the FHIR base and the token audience use this public URL");
    // The outbox worker: email by SMTP and/or everything by GOV.UK Notify, as configured; with
    // neither, messages are only written to the log (nothing leaves the server).
    let notify = match caldicott_adapters::notify::NotifyConfig::from_env() {
        Some(config) => {
            let config = config.map_err(|e| anyhow::anyhow!(e))?;
            tracing::info!(url = %config.base_url, "text messages, letters and (without SMTP) email go out through GOV.UK Notify");
            Some(caldicott_adapters::notify::NotifyCourier::new(config))
        }
        None => None,
    };
    let smtp = match caldicott_adapters::smtp::SmtpCourier::from_env() {
        Some(s) => {
            tracing::info!("email goes out by SMTP");
            Some(s.map_err(|e| anyhow::anyhow!(e))?)
        }
        None => None,
    };
    // Without Notify, letters are printed and posted by the practice (a task holds each one).
    let app = if notify.is_some() { app.with_letters_by_notify() } else { app };
    if smtp.is_none() && notify.is_none() {
        tracing::info!("no message provider configured: messages are written to the log only");
    }
    let courier: std::sync::Arc<dyn caldicott_app::outbox::Courier> =
        std::sync::Arc::new(caldicott_adapters::smtp::Couriers { smtp, notify });
    // Told to stop (Ctrl-C or SIGTERM), the server stops taking connections, finishes the
    // requests in flight, and the workers finish what they hold before the process exits.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = app.spawn_outbox_worker(courier, std::time::Duration::from_secs(2), stopped.clone());
    if let Some(dir) = inbox {
        tracing::info!(inbox = %dir.display(), "reading GP Connect Update Record messages from the inbox");
        let app = app.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            while !*stopped.borrow() {
                match app.process_update_record_inbox(&dir).await {
                    Ok(files) => {
                        for f in files {
                            match &f.receipt {
                                Ok(r) => {
                                    tracing::info!(file = %f.path.display(), code = r.code, "Update Record message taken from the inbox")
                                }
                                Err(e) => {
                                    tracing::warn!(file = %f.path.display(), error = %e, "Update Record file could not be taken")
                                }
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "reading the Update Record inbox"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
    }
    // Subject access export files are dropped 15 minutes after they were made, collected or not.
    {
        let app = app.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            while !*stopped.borrow() {
                match app.drop_expired_sar_exports().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(exports = n, "expired subject access exports dropped"),
                    Err(e) => tracing::warn!(error = %e, "dropping expired subject access exports"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
    }
    if let Some(schedule) = schedule {
        tracing::info!(folder = %schedule.dir.display(), hours = listen.backup_every, keep = schedule.keep, "backups are taken on a schedule and verified");
        backup::spawn(db.database.clone(), schedule, stopped.clone());
    }
    let limits = server::Limits {
        max_connections: listen.max_connections.max(1),
        header_timeout: std::time::Duration::from_secs(listen.header_timeout_secs.max(1)),
        request_timeout: std::time::Duration::from_secs(listen.request_timeout_secs.max(1)),
    };
    if let Some(maddr) = listen.metrics_listen {
        let l =
            tokio::net::TcpListener::bind(maddr).await.with_context(|| format!("listening on {maddr} for metrics"))?;
        tracing::info!("metrics at http://{}/metrics", l.local_addr().unwrap_or(maddr));
        let routes = caldicott_web::metrics::routes(app.clone(), metrics.clone(), None);
        let mut stopped = stopped.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let until = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = server::run(l, routes, limits, None, until).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    if let Some(saddr) = listen.spine_listen {
        let files = server::TlsFiles {
            cert: listen.spine_tls_cert.clone().context("--spine-tls-cert")?,
            key: listen.spine_tls_key.clone().context("--spine-tls-key")?,
            client_ca: Some(listen.spine_client_ca.clone().context("--spine-client-ca")?),
        };
        // Checked now, so that a wrong file stops the start rather than the first request.
        server::server_config(&files)?;
        let l = tokio::net::TcpListener::bind(saddr)
            .await
            .with_context(|| format!("listening on {saddr} for the Spine"))?;
        tracing::info!(
            "GP Connect for the Spine at https://{}/gpconnect/ (client certificates required)",
            l.local_addr().unwrap_or(saddr)
        );
        let routes = caldicott_web::spine_router(app.clone());
        let mut stopped = stopped.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let until = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = server::run(l, routes, limits, Some(files), until).await {
                tracing::error!(error = %e, "the Spine listener stopped");
            }
        });
    }
    let mut router = caldicott_web::router(app.clone());
    if let Some(token) = &listen.metrics_token {
        router = router.merge(caldicott_web::metrics::routes(app.clone(), metrics, Some(token)));
    }
    tracing::info!("caldicott listening on {scheme}://{bound}/");
    // The connection's address reaches the handlers and the audit log (tries are counted per
    // address); headers such as X-Forwarded-For are never read for it.
    let tls = listen.tls_cert.clone().zip(listen.tls_key.clone()).map(|(cert, key)| server::TlsFiles {
        cert,
        key,
        client_ca: None,
    });
    server::run(listener, router, limits, tls, async {
        shutdown_signal().await;
        tracing::info!("told to stop");
    })
    .await?;
    let _ = stop.send(true);
    if tokio::time::timeout(std::time::Duration::from_secs(20), worker).await.is_err() {
        tracing::warn!("the outbox worker did not finish in 20 seconds; its claims run out and are retried");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C, or SIGTERM (what systemd and container runtimes send to stop a service).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
