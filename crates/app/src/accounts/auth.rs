//! Staff credentials: argon2id password hashes, and API bearer tokens kept only as SHA-256 hashes.
//!
//! A token reads `cal_<practice id><token id><secret>`: the ids let the server find the token
//! within its practice (every lookup is tenant-first) and the 256-bit secret proves possession.

use crate::permit;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::ids::*;
use caldicott_core::permissions::Permission;
use caldicott_core::practice::OdsCode;
use caldicott_core::staff::{normalise_username, ApiToken};
use chrono::Duration;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const PREFIX: &str = "cal_";

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> AppResult<String> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AppError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(e.to_string()))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash to check against when there is no account, so that an unknown username costs the
/// same time as a known one.
pub(crate) const NO_ACCOUNT_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$dGhpc2lzbm90YXJlYWxoYXNoYXRhbGwxMjM0NTY3OA";

/// Password hashing has threads of its own, half the cores (at least one), each at a lower
/// scheduling priority (10 more nice than the process, on Linux): a flood of sign-ins queues for them and, when the
/// cores are busy, record reads on the async workers run first. The semaphore holds waiting
/// callers back so that a caller that gives up (a closed connection) never costs a hash.
struct Hashing {
    permits: tokio::sync::Semaphore,
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

/// The nice value of the hashing threads.
pub const HASHING_NICE: i32 = 10;

static HASHING: std::sync::LazyLock<Hashing> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = (cores / 2).max(1);
    let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    for i in 0..threads {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new().name(format!("password-hashing-{i}")).spawn(move || {
            lower_this_threads_priority();
            loop {
                let job = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!("could not start a password hashing thread: {e}");
        }
    }
    Hashing { permits: tokio::sync::Semaphore::new(threads), jobs: tx }
});

#[cfg(target_os = "linux")]
fn lower_this_threads_priority() {
    let me = Some(rustix::thread::gettid());
    let now = rustix::process::getpriority_process(me).unwrap_or(0);
    if let Err(e) = rustix::process::setpriority_process(me, (now + HASHING_NICE).min(19)) {
        tracing::warn!("could not lower the password hashing thread's priority: {e}");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {}

/// The nice value of the current thread (Linux), for the test that hashing runs below the
/// async workers.
#[cfg(target_os = "linux")]
fn this_threads_nice() -> Option<i32> {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok()
}

/// Runs `work` on a hashing thread, behind the hashing limit.
async fn on_hashing_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> AppResult<T> {
    let _permit = HASHING.permits.acquire().await.map_err(|e| AppError::Internal(e.to_string()))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Box<dyn FnOnce() + Send> = Box::new(move || {
        let _ = tx.send(work());
    });
    HASHING.jobs.send(job).map_err(|_| AppError::Internal("no password hashing thread is running".into()))?;
    rx.await.map_err(|_| AppError::Internal("password hashing stopped".into()))
}

/// [`verify_password`] off the async workers, on a hashing thread.
pub async fn verify_password_off_thread(password: &str, phc: &str) -> bool {
    let (password, phc) = (password.to_owned(), phc.to_owned());
    on_hashing_thread(move || verify_password(&password, &phc)).await.unwrap_or(false)
}

/// [`hash_password`] off the async workers, on a hashing thread.
pub async fn hash_password_off_thread(password: &str) -> AppResult<String> {
    let password = password.to_owned();
    on_hashing_thread(move || hash_password(&password)).await?
}

/// The nice value a hashing thread runs at, read on that thread (Linux; `None` elsewhere).
pub async fn hashing_thread_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        on_hashing_thread(this_threads_nice).await.ok().flatten()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Tries at each account's credentials, across every address: a burst of
/// [`AccountTries::BURST`], then one per [`AccountTries::EVERY`] (at most about 130 an hour,
/// ASVS 2.2.1's 100 an hour give or take the burst). Counted in the database
/// (`Store::take_account_try`, GCRA on the application's clock), so that every server behind a
/// load balancer shares one limit; the per-address waits are in the database too.
pub struct AccountTries;

impl AccountTries {
    pub const BURST: u32 = 10;
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(30);
}

/// Where a request comes from: the address of the connection as the server accepted it (never
/// a header a client can write). Tries at a credential are counted per account and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Client {
    pub address: Option<std::net::IpAddr>,
}

impl Client {
    pub fn at(address: std::net::IpAddr) -> Self {
        Self { address: Some(address) }
    }
    /// The key tries are counted under: the address, or "unknown" when the server had none
    /// (in-process calls and tests).
    pub fn key(&self) -> String {
        self.address.map_or_else(|| "unknown".to_owned(), |a| a.to_string())
    }
}

fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token just issued: the only moment its secret exists outside the caller's hands.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: ApiToken,
    pub secret: String,
}

/// The active member of staff `username` at the practice `ods`, acting from the command line.
pub async fn principal_for(app: &App, ods: &str, username: &str) -> AppResult<StaffPrincipal> {
    let ods = OdsCode::parse(ods).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let practice = app
        .store
        .practice_by_ods(&ods)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no practice with ODS code {ods}")))?;
    let username = normalise_username(username)
        .ok_or_else(|| AppError::BadRequest(format!("\"{username}\" is not a valid username")))?;
    let staff = app
        .store
        .staff_by_username(practice.id, &username)
        .await?
        .filter(|s| s.active)
        .ok_or_else(|| AppError::NotFound(format!("no active staff member {username} at {ods}")))?;
    Ok(StaffPrincipal { practice: practice.id, staff: staff.id, name: staff.display_name, role: staff.role })
}

/// Issues a bearer token to a member of staff of the practice with `ods`.
pub async fn issue_token(
    app: &App,
    ods: &str,
    username: &str,
    label: &str,
    valid_for: Duration,
) -> AppResult<IssuedToken> {
    let owner = principal_for(app, ods, username).await?;
    if valid_for <= Duration::zero() || valid_for > Duration::days(366) {
        return Err(AppError::BadRequest("a token may be valid for 1 to 366 days".into()));
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret_part = URL_SAFE_NO_PAD.encode(raw);
    let now = app.now();
    let token = ApiToken {
        id: TokenId::from_uuid(new_id()),
        practice: owner.practice,
        staff: owner.staff,
        label: label.trim().to_owned(),
        secret_hash: secret_hash(&secret_part),
        created_at: now,
        expires_at: now + valid_for,
        revoked_at: None,
    };
    let audit = AuditRecord::new(
        AuditEventId::from_uuid(new_id()),
        now,
        Actor { kind: ActorKind::System, id: "cli".into(), role: "administrator".into() },
        None,
        Action::TokenCreate,
        format!("token/{} staff/{}", token.id, owner.staff),
        Outcome::Success,
        format!("label={:?} expires={}", token.label, token.expires_at.to_rfc3339()),
    );
    app.store.create_api_token(owner.practice, &token, &audit).await?;
    let secret = format!("{PREFIX}{}{}{}", owner.practice.as_uuid().simple(), token.id.as_uuid().simple(), secret_part);
    Ok(IssuedToken { token, secret })
}

/// An API token as an administrator sees it: never its secret (only its hash is kept).
#[derive(Debug, Clone)]
pub struct TokenListing {
    pub token: ApiToken,
    pub owner_name: String,
    pub owner_username: String,
}

impl TokenListing {
    /// Whether the token still works at `now`.
    pub fn status_at(&self, now: chrono::DateTime<chrono::Utc>) -> &'static str {
        match self.token.revoked_at {
            Some(_) => "revoked",
            None if self.token.expires_at <= now => "expired",
            None => "active",
        }
    }
}

fn listings(all: Vec<(ApiToken, caldicott_core::staff::StaffMember)>) -> Vec<TokenListing> {
    all.into_iter()
        .map(|(token, s)| TokenListing { token, owner_name: s.display_name, owner_username: s.username })
        .collect()
}

fn token_id(id: &str) -> AppResult<TokenId> {
    Uuid::try_parse(id.trim())
        .map(TokenId::from_uuid)
        .map_err(|_| AppError::NotFound(format!("no token {id} at this practice")))
}

impl App {
    /// The practice's API tokens, newest first (administrators).
    pub async fn api_tokens(&self, who: &StaffPrincipal) -> AppResult<Vec<TokenListing>> {
        permit(who, Permission::ManageApiTokens)?;
        Ok(listings(self.store.api_tokens(who.practice).await?))
    }

    /// Revokes one of the practice's API tokens (administrators): its next request is refused.
    /// Audited; another practice's token, or one already revoked, is not found.
    pub async fn revoke_api_token(&self, who: &StaffPrincipal, id: &str) -> AppResult<()> {
        permit(who, Permission::ManageApiTokens)?;
        let id = token_id(id)?;
        let audit = AuditRecord::new(
            AuditEventId::from_uuid(new_id()),
            self.now(),
            who.actor(),
            None,
            Action::TokenRevoke,
            format!("token/{id}"),
            Outcome::Success,
            "",
        );
        revoke(self, who.practice, id, &audit).await
    }
}

async fn revoke(app: &App, practice: PracticeId, id: TokenId, audit: &AuditRecord) -> AppResult<()> {
    match app.store.revoke_api_token(practice, id, app.now(), audit).await {
        Err(caldicott_store::StoreError::NotFound(_)) => {
            Err(AppError::NotFound(format!("no active token {id} at this practice")))
        }
        other => Ok(other?),
    }
}

/// The API tokens of the practice with `ods`, for the command line.
pub async fn list_tokens(app: &App, ods: &str) -> AppResult<Vec<TokenListing>> {
    let practice = practice_of(app, ods).await?;
    Ok(listings(app.store.api_tokens(practice).await?))
}

/// Revokes a token of the practice with `ods` from the command line; audited as the CLI.
pub async fn revoke_token(app: &App, ods: &str, id: &str) -> AppResult<()> {
    let practice = practice_of(app, ods).await?;
    let id = token_id(id)?;
    let audit = AuditRecord::new(
        AuditEventId::from_uuid(new_id()),
        app.now(),
        Actor { kind: ActorKind::System, id: "cli".into(), role: "administrator".into() },
        None,
        Action::TokenRevoke,
        format!("token/{id}"),
        Outcome::Success,
        "",
    );
    revoke(app, practice, id, &audit).await
}

async fn practice_of(app: &App, ods: &str) -> AppResult<PracticeId> {
    let ods = OdsCode::parse(ods).map_err(|e| AppError::BadRequest(e.to_string()))?;
    Ok(app
        .store
        .practice_by_ods(&ods)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no practice with ODS code {ods}")))?
        .id)
}

const UNAUTHENTICATED: &str = "a valid bearer token is required (create one with `caldicott token create`)";

/// Resolves a bearer token to the staff member it was issued to. Unknown, expired and revoked
/// tokens all get the same answer.
pub async fn authenticate(app: &App, bearer: &str) -> AppResult<StaffPrincipal> {
    let fail = || AppError::Unauthenticated(UNAUTHENTICATED.into());
    let rest = bearer.trim().strip_prefix(PREFIX).ok_or_else(fail)?;
    if rest.len() < 64 || !rest.is_char_boundary(64) {
        return Err(fail());
    }
    let practice = Uuid::try_parse(&rest[..32]).map(PracticeId::from_uuid).map_err(|_| fail())?;
    let id = Uuid::try_parse(&rest[32..64]).map(TokenId::from_uuid).map_err(|_| fail())?;
    let (token, staff) = app.store.staff_for_token(practice, id).await?.ok_or_else(fail)?;
    if !constant_time_eq(&secret_hash(&rest[64..]), &token.secret_hash)
        || !token.is_usable_at(app.now())
        || !staff.active
    {
        return Err(fail());
    }
    Ok(StaffPrincipal { practice, staff: staff.id, name: staff.display_name, role: staff.role })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[tokio::test]
    async fn hashing_runs_off_the_async_workers_and_below_their_priority() {
        // T-benchmark "reads keep their p99 during a sign-in flood": hashes run on their own
        // threads, which the scheduler puts behind the async workers when the cores are busy.
        let h = hash_password_off_thread("correct horse").await.unwrap();
        assert!(verify_password_off_thread("correct horse", &h).await);
        assert!(!verify_password_off_thread("wrong horse", &h).await);
        #[cfg(target_os = "linux")]
        {
            let here = this_threads_nice().unwrap();
            let hashing = hashing_thread_nice().await.unwrap();
            assert_eq!(hashing, (here + HASHING_NICE).min(19), "hashing at nice {hashing}, workers at {here}");
        }
        // Many at once all get their answer (the queue loses nothing).
        let tries: Vec<_> = (0..8)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move {
                    verify_password_off_thread(if i % 2 == 0 { "correct horse" } else { "no" }, &h).await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tries {
            answers.push(t.await.unwrap());
        }
        assert_eq!(answers, [true, false, true, false, true, false, true, false]);
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
