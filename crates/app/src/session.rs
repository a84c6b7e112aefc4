//! Staff sign-in: password, then a TOTP second factor (enrolled at the first sign-in), then a
//! fresh session. Repeated failures lock the account; sessions end when idle, at their
//! lifetime, or at sign-out. Every step is audited.
//!
//! The browser holds `s1_<practice id><session id><secret>`; the server keeps only the
//! SHA-256 of the secret, so a copy of the database cannot be used to sign in.

use crate::auth::verify_password;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::ids::*;
use caldicott_core::practice::{OdsCode, Practice};
use caldicott_core::staff::*;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use totp_rs::{Builder, Secret, Totp};
use uuid::Uuid;

const PREFIX: &str = "s1_";
/// How long the second-factor step may take.
const SECOND_FACTOR_WINDOW: Duration = Duration::minutes(10);
/// A session's last-seen time is written at most this often.
const TOUCH_EVERY: Duration = Duration::seconds(60);
const WRONG_CREDENTIALS: &str = "The practice code, username or password is not right. Check them and try again.";
const WRONG_CODE: &str = "That security code is not right. Enter the 6-digit code your authenticator app shows now.";

fn random_token(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn totp(secret_b32: &str) -> AppResult<Totp> {
    let secret =
        Secret::try_from_base32(secret_b32).map_err(|e| AppError::Internal(format!("stored TOTP secret: {e:?}")))?;
    Builder::new().with_secret(secret).build().map_err(|e| AppError::Internal(format!("TOTP: {e:?}")))
}

/// Whether `code` is the TOTP code for `secret_b32` at `now`, allowing one 30-second step of
/// clock difference either way.
pub fn code_is_valid(secret_b32: &str, code: &str, now: DateTime<Utc>) -> AppResult<bool> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(false);
    }
    Ok(totp(secret_b32)?.check(&code, u64::try_from(now.timestamp()).unwrap_or(0)).is_some())
}

/// The current code for a secret (for tests and for the demo's instructions).
pub fn current_code(secret_b32: &str, now: DateTime<Utc>) -> AppResult<String> {
    Ok(totp(secret_b32)?.generate(u64::try_from(now.timestamp()).unwrap_or(0)).to_string())
}

/// What the second-factor page must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondFactor {
    /// First sign-in: show the secret (as a QR code and as text) to add to an authenticator app.
    Enrol { secret: String, otpauth_uri: String },
    /// Ask for the current code.
    EnterCode,
}

/// The session cookie and, for a pending sign-in, what comes next.
#[derive(Debug, Clone)]
pub struct SessionStart {
    pub cookie: String,
    pub next: SecondFactor,
}

/// A live, signed-in staff session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub who: StaffPrincipal,
    pub session: SessionId,
    pub csrf_token: String,
    pub practice_name: String,
    /// Automatic online access is paused at the practice's request (D9).
    pub practice_paused: bool,
    /// Why automatic access is paused, for the banner.
    pub practice_pause_reason: String,
    /// Staff instant messages waiting to be read, for the header.
    pub unread_messages: i64,
}

struct Cookie {
    practice: PracticeId,
    session: SessionId,
    secret: String,
}

fn parse_cookie(value: &str) -> Option<Cookie> {
    let rest = value.trim().strip_prefix(PREFIX)?;
    if rest.len() < 64 || !rest.is_char_boundary(64) {
        return None;
    }
    Some(Cookie {
        practice: PracticeId::from_uuid(Uuid::try_parse(&rest[..32]).ok()?),
        session: SessionId::from_uuid(Uuid::try_parse(&rest[32..64]).ok()?),
        secret: rest[64..].to_owned(),
    })
}

fn actor(staff: &StaffMember) -> Actor {
    Actor { kind: ActorKind::Staff, id: staff.id.to_string(), role: staff.role.as_str().to_owned() }
}

impl App {
    fn staff_audit(
        &self,
        staff: &StaffMember,
        action: Action,
        outcome: Outcome,
        detail: impl Into<String>,
    ) -> AuditRecord {
        AuditRecord::new(
            AuditEventId::from_uuid(new_id()),
            self.now(),
            actor(staff),
            None,
            action,
            format!("staff/{}", staff.id),
            outcome,
            detail,
        )
    }

    fn new_session(&self, staff: &StaffMember, stage: SessionStage) -> (StaffSession, String) {
        let now = self.now();
        let secret = random_token(32);
        let session = StaffSession {
            id: SessionId::from_uuid(new_id()),
            practice: staff.practice,
            staff: staff.id,
            secret_hash: hash(&secret),
            csrf_token: random_token(24),
            stage,
            created_at: now,
            last_seen_at: now,
            expires_at: now + if stage == SessionStage::SignedIn { SESSION_LIFETIME } else { SECOND_FACTOR_WINDOW },
            ended_at: None,
        };
        let cookie = format!("{PREFIX}{}{}{secret}", staff.practice.as_uuid().simple(), session.id.as_uuid().simple());
        (session, cookie)
    }

    /// The practice to sign in to: by ODS code, or the only one when a database holds just one.
    pub async fn sign_in_practice(&self, ods: Option<&str>) -> AppResult<Practice> {
        match ods.map(str::trim).filter(|s| !s.is_empty()) {
            Some(code) => {
                let code = OdsCode::parse(code).map_err(|e| AppError::BadRequest(e.to_string()))?;
                self.store
                    .practice_by_ods(&code)
                    .await?
                    .ok_or_else(|| AppError::Unauthenticated(WRONG_CREDENTIALS.into()))
            }
            None => {
                let mut all = self.store.practices().await?;
                if all.len() == 1 {
                    Ok(all.remove(0))
                } else {
                    Err(AppError::BadRequest("Enter your practice's ODS code".into()))
                }
            }
        }
    }

    /// Step one: the password. On success, a second-factor session starts.
    pub async fn sign_in(&self, ods: Option<&str>, username: &str, password: &str) -> AppResult<SessionStart> {
        if username.trim().is_empty() || password.is_empty() {
            return Err(AppError::BadRequest("Enter your username and password".into()));
        }
        let practice = self.sign_in_practice(ods).await?;
        let now = self.now();
        let staff = match normalise_username(username) {
            Some(u) => self.store.staff_by_username(practice.id, &u).await?,
            None => None,
        };
        let Some(staff) = staff.filter(|s| s.active) else {
            // Spend the same time as a real check, so that timing does not reveal usernames.
            let _ = verify_password(
                password,
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$dGhpc2lzbm90YXJlYWxoYXNoYXRhbGwxMjM0NTY3OA",
            );
            return Err(AppError::Unauthenticated(WRONG_CREDENTIALS.into()));
        };
        if staff.sign_in.is_locked_at(now) {
            let audit = self.staff_audit(&staff, Action::SignInFailed, Outcome::Denied, "account locked");
            self.audit.record(practice.id, audit).await?;
            return Err(locked(&staff.sign_in));
        }
        if !verify_password(password, &staff.password_hash) {
            return Err(self.fail(&staff, "wrong password").await);
        }
        let mut state = staff.sign_in.clone();
        let next = match (&state.totp_secret, state.totp_confirmed) {
            (Some(_), true) => SecondFactor::EnterCode,
            (existing, _) => {
                let secret = match existing {
                    Some(s) => s.clone(),
                    None => {
                        let mut raw = [0u8; 20];
                        rand::rngs::OsRng.fill_bytes(&mut raw);
                        Secret::from(raw).to_base32()
                    }
                };
                state.totp_secret = Some(secret.clone());
                let otpauth_uri = format!(
                    "otpauth://totp/caldicott:{}%40{}?secret={secret}&issuer=caldicott&algorithm=SHA1&digits=6&period=30",
                    staff.username, practice.ods_code
                );
                SecondFactor::Enrol { secret, otpauth_uri }
            }
        };
        let (session, cookie) = self.new_session(&staff, SessionStage::SecondFactor);
        if state != staff.sign_in {
            let audit = self.staff_audit(
                &staff,
                Action::SecondFactorEnrolled,
                Outcome::Success,
                "secret issued, not yet confirmed",
            );
            self.store.set_sign_in_state(practice.id, staff.id, &state, &audit).await?;
        }
        let audit = self.staff_audit(&staff, Action::SignIn, Outcome::Success, "password accepted; second factor next");
        self.store.create_session(practice.id, &session, &audit).await?;
        Ok(SessionStart { cookie, next })
    }

    async fn fail(&self, staff: &StaffMember, why: &str) -> AppError {
        let now = self.now();
        let state = staff.sign_in.after_failure(now);
        let (action, outcome) = if state.is_locked_at(now) {
            (Action::SignInLocked, Outcome::Denied)
        } else {
            (Action::SignInFailed, Outcome::Denied)
        };
        let audit = self.staff_audit(staff, action, outcome, why);
        match self.store.set_sign_in_state(staff.practice, staff.id, &state, &audit).await {
            Err(e) => e.into(),
            Ok(()) if state.is_locked_at(now) => locked(&state),
            Ok(()) if why == "wrong code" => AppError::Unauthenticated(WRONG_CODE.into()),
            Ok(()) => AppError::Unauthenticated(WRONG_CREDENTIALS.into()),
        }
    }

    async fn load_session(&self, cookie: &str) -> AppResult<(StaffSession, StaffMember)> {
        let expired = || AppError::Unauthenticated("Your session has ended. Sign in again.".into());
        let c = parse_cookie(cookie).ok_or_else(expired)?;
        let (session, staff) = self.store.session(c.practice, c.session).await?.ok_or_else(expired)?;
        if hash(&c.secret) != session.secret_hash || !session.is_live_at(self.now()) || !staff.active {
            return Err(expired());
        }
        Ok((session, staff))
    }

    /// What the second-factor page shows for this pending session.
    pub async fn second_factor_step(&self, cookie: &str) -> AppResult<SecondFactor> {
        let (session, staff) = self.load_session(cookie).await?;
        if session.stage != SessionStage::SecondFactor {
            return Err(AppError::Conflict("already signed in".into()));
        }
        let practice =
            self.store.practice(staff.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        Ok(match (&staff.sign_in.totp_secret, staff.sign_in.totp_confirmed) {
            (Some(secret), false) => SecondFactor::Enrol {
                secret: secret.clone(),
                otpauth_uri: format!(
                    "otpauth://totp/caldicott:{}%40{}?secret={secret}&issuer=caldicott&algorithm=SHA1&digits=6&period=30",
                    staff.username, practice.ods_code
                ),
            },
            _ => SecondFactor::EnterCode,
        })
    }

    /// Step two: the code. On success the pending session is replaced by a new signed-in one
    /// (a new id and secret: the cookie changes at sign-in).
    pub async fn second_factor(&self, cookie: &str, code: &str) -> AppResult<String> {
        let (session, staff) = self.load_session(cookie).await?;
        if session.stage != SessionStage::SecondFactor {
            return Err(AppError::Conflict("already signed in".into()));
        }
        if staff.sign_in.is_locked_at(self.now()) {
            return Err(locked(&staff.sign_in));
        }
        let secret =
            staff.sign_in.totp_secret.clone().ok_or_else(|| AppError::Conflict("no second factor to check".into()))?;
        if !code_is_valid(&secret, code, self.now())? {
            return Err(self.fail(&staff, "wrong code").await);
        }
        let mut state = staff.sign_in.after_success();
        let enrolled = !state.totp_confirmed;
        state.totp_confirmed = true;
        if state != staff.sign_in {
            let audit = self.staff_audit(
                &staff,
                if enrolled { Action::SecondFactorEnrolled } else { Action::SignIn },
                Outcome::Success,
                if enrolled { "authenticator confirmed" } else { "failure count cleared" },
            );
            self.store.set_sign_in_state(staff.practice, staff.id, &state, &audit).await?;
        }
        let (signed_in, cookie) = self.new_session(&staff, SessionStage::SignedIn);
        let audit = self.staff_audit(&staff, Action::SignIn, Outcome::Success, "signed in");
        self.store.replace_session(staff.practice, session.id, &signed_in, &audit).await?;
        Ok(cookie)
    }

    /// The signed-in member of staff behind a session cookie.
    pub async fn signed_in(&self, cookie: &str) -> AppResult<SignedIn> {
        let (session, staff) = self.load_session(cookie).await?;
        if session.stage != SessionStage::SignedIn {
            return Err(AppError::Unauthenticated("Finish signing in with your security code.".into()));
        }
        let now = self.now();
        if now - session.last_seen_at >= TOUCH_EVERY {
            self.store.touch_session(staff.practice, session.id, now).await?;
        }
        let practice =
            self.store.practice(staff.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let who = StaffPrincipal {
            practice: staff.practice,
            staff: staff.id,
            name: staff.display_name.clone(),
            role: staff.role,
        };
        let unread_messages = if who.role.works_with_patients() { self.unread_staff_messages(&who).await? } else { 0 };
        Ok(SignedIn {
            who,
            unread_messages,
            session: session.id,
            csrf_token: session.csrf_token,
            practice_paused: practice.online.paused,
            practice_pause_reason: practice.online.pause_reason.clone(),
            practice_name: practice.name,
        })
    }

    /// Ends the session behind a cookie (a no-op for one that has already ended).
    pub async fn sign_out(&self, cookie: &str) -> AppResult<()> {
        let Ok((session, staff)) = self.load_session(cookie).await else { return Ok(()) };
        let audit = self.staff_audit(&staff, Action::SignOut, Outcome::Success, "");
        self.store.end_session(staff.practice, session.id, self.now(), &audit).await?;
        Ok(())
    }
}

fn locked(state: &SignInState) -> AppError {
    let until = state.locked_until.map(|t| t.format("%H:%M UTC").to_string()).unwrap_or_default();
    AppError::Forbidden(format!(
        "This account is locked after {MAX_FAILED_SIGN_INS} failed attempts. Try again after {until}, or ask an administrator."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_checked_with_one_step_of_skew() {
        let secret = Secret::from([7u8; 20]).to_base32();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let code = current_code(&secret, now).unwrap();
        assert!(code_is_valid(&secret, &code, now).unwrap());
        assert!(code_is_valid(&secret, &format!(" {} {} ", &code[..3], &code[3..]), now).unwrap());
        assert!(code_is_valid(&secret, &code, now + Duration::seconds(30)).unwrap());
        assert!(!code_is_valid(&secret, &code, now + Duration::seconds(95)).unwrap());
        assert!(!code_is_valid(&secret, "12345", now).unwrap());
        assert!(!code_is_valid(&secret, "abcdef", now).unwrap());
    }

    #[test]
    fn cookies_parse_only_in_their_own_shape() {
        assert!(parse_cookie("s1_").is_none());
        assert!(parse_cookie("cal_0000").is_none());
        let good = format!("s1_{}{}secret", Uuid::from_u128(1).simple(), Uuid::from_u128(2).simple());
        let c = parse_cookie(&good).unwrap();
        assert_eq!(
            (c.practice.as_uuid(), c.session.as_uuid(), c.secret.as_str()),
            (Uuid::from_u128(1), Uuid::from_u128(2), "secret")
        );
    }
}
