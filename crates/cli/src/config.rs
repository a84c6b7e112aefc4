//! The configuration file (TOML). Every setting also has a command-line flag or an environment
//! variable; the order of precedence is flag, then environment, then file, then the default.
//!
//! The file is read before the command line is parsed: each setting it holds becomes the value
//! of its environment variable unless that variable is already set, so that one code path (clap's
//! `env` fallback and the adapters' `from_env`) reads every setting, wherever it was written.
//! A key the file does not know is refused, naming it, rather than silently ignored.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Every key the file takes: (section, key, environment variable, secret).
pub const SETTINGS: &[(&str, &str, &str, bool)] = &[
    ("", "database", "CALDICOTT_DATABASE", true),
    ("", "secret_key_file", "CALDICOTT_SECRET_KEY_FILE", false),
    ("", "log", "CALDICOTT_LOG", false),
    ("", "log_format", "CALDICOTT_LOG_FORMAT", false),
    ("server", "listen", "CALDICOTT_LISTEN", false),
    ("server", "public_url", "CALDICOTT_PUBLIC_URL", false),
    ("server", "tls_cert", "CALDICOTT_TLS_CERT", false),
    ("server", "tls_key", "CALDICOTT_TLS_KEY", false),
    ("server", "max_connections", "CALDICOTT_MAX_CONNECTIONS", false),
    ("server", "header_timeout", "CALDICOTT_HEADER_TIMEOUT", false),
    ("server", "request_timeout", "CALDICOTT_REQUEST_TIMEOUT", false),
    ("server", "update_record_inbox", "CALDICOTT_UPDATE_RECORD_INBOX", false),
    ("spine", "listen", "CALDICOTT_SPINE_LISTEN", false),
    ("spine", "tls_cert", "CALDICOTT_SPINE_TLS_CERT", false),
    ("spine", "tls_key", "CALDICOTT_SPINE_TLS_KEY", false),
    ("spine", "client_ca", "CALDICOTT_SPINE_CLIENT_CA", false),
    ("metrics", "listen", "CALDICOTT_METRICS_LISTEN", false),
    ("metrics", "token", "CALDICOTT_METRICS_TOKEN", true),
    ("backup", "dir", "CALDICOTT_BACKUP_DIR", false),
    ("backup", "every_hours", "CALDICOTT_BACKUP_EVERY", false),
    ("backup", "keep", "CALDICOTT_BACKUP_KEEP", false),
    ("throttle", "people", "CALDICOTT_THROTTLE_PEOPLE", false),
    ("throttle", "machines", "CALDICOTT_THROTTLE_MACHINES", false),
    ("throttle", "failures", "CALDICOTT_THROTTLE_FAILURES", false),
    ("smtp", "url", "CALDICOTT_SMTP_URL", true),
    ("smtp", "from", "CALDICOTT_SMTP_FROM", false),
    ("notify", "api_key", "CALDICOTT_NOTIFY_API_KEY", true),
    ("notify", "url", "CALDICOTT_NOTIFY_URL", false),
    ("notify", "email_template", "CALDICOTT_NOTIFY_EMAIL_TEMPLATE", false),
    ("notify", "sms_template", "CALDICOTT_NOTIFY_SMS_TEMPLATE", false),
    ("notify", "letter_template", "CALDICOTT_NOTIFY_LETTER_TEMPLATE", false),
    ("notify", "callback_token", "CALDICOTT_NOTIFY_CALLBACK_TOKEN", true),
    ("notify", "sms_fragment_price", "CALDICOTT_SMS_FRAGMENT_PRICE", false),
    ("nhs_login", "issuer", "CALDICOTT_OIDC_ISSUER", false),
    ("nhs_login", "client_id", "CALDICOTT_OIDC_CLIENT_ID", false),
    ("nhs_login", "redirect_uri", "CALDICOTT_OIDC_REDIRECT_URI", false),
    ("nhs_login", "scope", "CALDICOTT_OIDC_SCOPE", false),
    ("nhs_login", "key_file", "CALDICOTT_OIDC_KEY_FILE", false),
    ("nhs_login", "key_id", "CALDICOTT_OIDC_KEY_ID", false),
    ("nhs_login", "key_alg", "CALDICOTT_OIDC_KEY_ALG", false),
    ("nhs_login", "id_token_alg", "CALDICOTT_OIDC_ID_TOKEN_ALG", false),
];

/// The file named by `--config FILE` (or `--config=FILE`) in `args`, else by `CALDICOTT_CONFIG`.
pub fn path_in(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("CALDICOTT_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The settings a file holds, as (environment variable, value).
pub fn read(path: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the configuration {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    let mut take = |section: &str, key: &str, value: &toml::Value| {
        let name = if section.is_empty() { key.to_owned() } else { format!("{section}.{key}") };
        match SETTINGS.iter().find(|(s, k, _, _)| *s == section && *k == key) {
            None => unknown.push(name),
            Some((_, _, env, _)) => match scalar(value) {
                Some(v) => out.push((*env, v)),
                None => unknown.push(format!("{name} (a text, number or true/false is needed)")),
            },
        }
    };
    for (key, value) in &table {
        match value {
            toml::Value::Table(inner) if SETTINGS.iter().any(|(s, _, _, _)| s == key) => {
                for (k, v) in inner {
                    take(key, k, v);
                }
            }
            _ => take("", key, value),
        }
    }
    if !unknown.is_empty() {
        bail!(
            "{} has settings caldicott does not know: {} (see docs/operations.md for the list)",
            path.display(),
            unknown.join(", ")
        );
    }
    Ok(out)
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Makes each setting in the file the value of its environment variable, unless the
/// environment sets it already. Returns the variables the file set. Call before any thread
/// starts.
pub fn apply(path: &Path) -> anyhow::Result<Vec<&'static str>> {
    let mut applied = Vec::new();
    for (env, value) in read(path)? {
        if std::env::var_os(env).is_none() {
            std::env::set_var(env, value);
            applied.push(env);
        }
    }
    Ok(applied)
}

/// The variables the configuration file set (for `config check` to say where a value came from).
pub static FROM_FILE: std::sync::OnceLock<(PathBuf, Vec<&'static str>)> = std::sync::OnceLock::new();

/// `caldicott config check`: the settings `serve` would start with, where each came from, and
/// every problem with them, each named. Changes nothing.
pub async fn check(db: &crate::Db, listen: &crate::Listen) -> anyhow::Result<std::process::ExitCode> {
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    match FROM_FILE.get() {
        Some((path, _)) => println!("Configuration file: {}", path.display()),
        None => println!("Configuration file: none (--config FILE or CALDICOTT_CONFIG names one)"),
    }
    println!("Settings (flag, then environment, then file, then default):");
    let from_file = FROM_FILE.get().map(|(_, v)| v.as_slice()).unwrap_or_default();
    for (section, key, env, secret) in SETTINGS {
        let Ok(value) = std::env::var(env) else { continue };
        let name = if section.is_empty() { (*key).to_owned() } else { format!("{section}.{key}") };
        let shown = match (*secret, *env) {
            // A database URL is shown with its password taken out.
            (true, "CALDICOTT_DATABASE") => caldicott_store::redact_url(&value),
            (true, _) => "(set; not shown)".to_owned(),
            (false, _) => value,
        };
        let source = if from_file.contains(env) { "file" } else { "environment" };
        println!("  {name:<28} {shown}  [{source}: {env}]");
    }
    // The database: reachable, and how far its schema is from this build's.
    match caldicott_store::probe(&db.database).await {
        Ok(about) => notes.push(format!("database: {about}")),
        Err(e) => problems.push(format!("database {}: {e}", caldicott_store::redact_url(&db.database))),
    }
    let key = db.key_file();
    match std::fs::metadata(&key) {
        Ok(m) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if m.permissions().mode() & 0o077 != 0 {
                    problems.push(format!(
                        "the secret key {} can be read by others: chmod 600 it (owned by the service's user)",
                        key.display()
                    ));
                }
            }
            let _ = m;
            notes.push(format!("secret key: {}", key.display()));
        }
        Err(_) => warnings.push(format!(
            "secret key: {} is not there yet; it is made at the first start. Keep a copy apart from the backups.",
            key.display()
        )),
    }
    if let Some(url) = &listen.public_url {
        if let Err(e) = caldicott_app::parse_public_url(url) {
            problems.push(format!("server.public_url: {e}"));
        } else if url.starts_with("http://") && listen.tls_cert.is_none() {
            warnings.push("the public URL is http://: serve it over TLS (see docs/operations.md)".into());
        }
    }
    if let (Some(cert), Some(key)) = (&listen.tls_cert, &listen.tls_key) {
        match crate::server::server_config(&crate::server::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
        }) {
            Ok(_) => notes.push(format!("TLS: {} and its key make a pair", cert.display())),
            Err(e) => problems.push(format!("TLS: {e:#}")),
        }
    }
    if let (Some(cert), Some(key), Some(ca)) = (&listen.spine_tls_cert, &listen.spine_tls_key, &listen.spine_client_ca)
    {
        match crate::server::server_config(&crate::server::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: Some(ca.clone()),
        }) {
            Ok(_) => notes.push(format!(
                "Spine listener: {} and its key make a pair; client certificates from {} only",
                cert.display(),
                ca.display()
            )),
            Err(e) => problems.push(format!("spine: {e:#}")),
        }
    }
    if listen.metrics_token.as_ref().is_some_and(|t| t.len() < 32) {
        problems.push("metrics.token must be at least 32 characters".into());
    }
    if let Some(dir) = &listen.backup_dir {
        if !(listen.backup_every.is_finite() && listen.backup_every > 0.0) {
            problems.push("backup.every_hours must be a number of hours above 0".into());
        }
        let probe = dir.join(format!(".caldicott-check-{}", uuid::Uuid::now_v7().simple()));
        match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&probe, b"")) {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
                notes.push(format!(
                    "backups: every {} hours into {}, keeping {}",
                    listen.backup_every,
                    dir.display(),
                    listen.backup_keep
                ));
            }
            Err(e) => problems.push(format!("backup.dir {} cannot be written: {e}", dir.display())),
        }
    }
    if let Some(Err(e)) = caldicott_adapters::smtp::SmtpCourier::from_env() {
        problems.push(format!("smtp: {e}"));
    }
    if let Some(Err(e)) = caldicott_adapters::notify::NotifyConfig::from_env() {
        problems.push(format!("notify: {e}"));
    }
    if std::env::var("CALDICOTT_NOTIFY_CALLBACK_TOKEN").is_ok_and(|t| t.len() < 16) {
        problems.push("notify.callback_token must be at least 16 characters".into());
    }
    if let Some(Err(e)) = caldicott_adapters::nhs_login::OidcConfig::from_env() {
        problems.push(format!("nhs_login: {e}"));
    }
    for (name, env) in [
        ("throttle.people", "CALDICOTT_THROTTLE_PEOPLE"),
        ("throttle.machines", "CALDICOTT_THROTTLE_MACHINES"),
        ("throttle.failures", "CALDICOTT_THROTTLE_FAILURES"),
    ] {
        if let Ok(v) = std::env::var(env) {
            let ok = v.split_once('/').is_some_and(|(b, s)| {
                b.trim().parse::<u32>().is_ok_and(|b| b > 0) && s.trim().parse::<f64>().is_ok_and(|s| s > 0.0)
            });
            if !ok {
                problems.push(format!("{name} must read <burst>/<seconds per try>, for example 20/3 (it is {v:?})"));
            }
        }
    }
    println!();
    for n in &notes {
        println!("ok: {n}");
    }
    for w in &warnings {
        println!("warning: {w}");
    }
    for p in &problems {
        println!("problem: {p}");
    }
    if problems.is_empty() {
        println!("The configuration is good.");
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        println!("{} problem(s): serve would not start, or would start without what is asked of it.", problems.len());
        Ok(std::process::ExitCode::FAILURE)
    }
}
