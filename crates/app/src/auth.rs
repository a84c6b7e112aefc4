//! Staff credentials: argon2id password hashes, and API bearer tokens kept only as SHA-256 hashes.
//!
//! A token reads `cal_<practice id><token id><secret>`: the ids let the server find the token
//! within its practice (every lookup is tenant-first) and the 256-bit secret proves possession.

use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::ids::*;
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

/// Issues a bearer token to a member of staff of the practice with `ods`.
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

pub async fn issue_token(
    app: &App,
    ods: &str,
    username: &str,
    label: &str,
    valid_for: Duration,
) -> AppResult<IssuedToken> {
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
    if valid_for <= Duration::zero() || valid_for > Duration::days(366) {
        return Err(AppError::BadRequest("a token may be valid for 1 to 366 days".into()));
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret_part = URL_SAFE_NO_PAD.encode(raw);
    let now = app.now();
    let token = ApiToken {
        id: TokenId::from_uuid(new_id()),
        practice: practice.id,
        staff: staff.id,
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
        format!("token/{} staff/{}", token.id, staff.id),
        Outcome::Success,
        format!("label={:?} expires={}", token.label, token.expires_at.to_rfc3339()),
    );
    app.store.create_api_token(practice.id, &token, &audit).await?;
    let secret = format!("{PREFIX}{}{}{}", practice.id.as_uuid().simple(), token.id.as_uuid().simple(), secret_part);
    Ok(IssuedToken { token, secret })
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

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
