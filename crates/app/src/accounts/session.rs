//! Staff sign-in: password, then a TOTP second factor (enrolled at the first sign-in), then a
//! fresh session. Repeated failures lock the account; sessions end when idle, at their
//! lifetime, or at sign-out. Every step is audited.
//!
//! The browser holds `s1_<practice id><session id><secret>`; the server keeps only the
//! SHA-256 of the secret, so a copy of the database cannot be used to sign in.

use crate::auth::{verify_password_off_thread, Client, NO_ACCOUNT_HASH};
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::credentials::{Subject, TotpLogin, PASSWORD_MAX_CHARS};
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
/// One answer for a wrong password, an unknown username and a try made too soon after others:
/// the same words, after the same work (ASVS 2.2.1, 2.5.2).
pub const WRONG_CREDENTIALS: &str = "The practice code, username or password is not right, or there have been \
several wrong tries: wait a minute, then try again.";
/// One answer for a wrong code, a code used before and a try made too soon after others.
pub const WRONG_CODE: &str = "That security code is not right, or it has been used already, or there have been \
several wrong tries: wait a minute, then enter the code your authenticator app shows now.";

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

/// The time step `code` is the TOTP code of, for `secret_b32` at `now`, allowing one 30-second
/// step of clock difference either way; `None` when it is not a current code. A step may be
/// used once ([`App::accept_code`]).
pub fn code_step(secret_b32: &str, code: &str, now: DateTime<Utc>) -> AppResult<Option<i64>> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    Ok(totp(secret_b32)?.check(&code, u64::try_from(now.timestamp()).unwrap_or(0)).and_then(|s| i64::try_from(s).ok()))
}

/// Whether `code` is a current TOTP code for `secret_b32` (whether or not used before).
pub fn code_is_valid(secret_b32: &str, code: &str, now: DateTime<Utc>) -> AppResult<bool> {
    Ok(code_step(secret_b32, code, now)?.is_some())
}

/// The current code for a secret (for tests and for the demo's instructions).
pub fn current_code(secret_b32: &str, now: DateTime<Utc>) -> AppResult<String> {
    Ok(totp(secret_b32)?.generate(u64::try_from(now.timestamp()).unwrap_or(0)).to_string())
}

/// How a claimed try at a password went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tried {
    Right,
    /// Checked, and wrong (or no such account).
    Wrong,
    /// Not checked: a wait from earlier wrong tries is due.
    Refused,
}

impl Tried {
    /// For the audit: `wrong` when it was checked and wrong.
    pub(crate) fn why(self, wrong: &'static str) -> &'static str {
        match self {
            Tried::Refused => "try refused unchecked: waiting after wrong tries",
            Tried::Wrong => wrong,
            Tried::Right => "right",
        }
    }
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

    /// Claims one try at `subject`'s credential from `from` (counted as failed until the sign-in
    /// completes): `false` when a wait from earlier failures is due and the credential must not
    /// be checked at all.
    pub(crate) async fn claim_try(&self, practice: PracticeId, subject: &Subject, from: &Client) -> AppResult<bool> {
        let Some(claim) = self.store.claim_credential_try(practice, subject, &from.key(), self.now()).await? else {
            return Ok(false);
        };
        // An address the account signed in from before is not held to the account-wide rate,
        // which an attacker elsewhere could spend: they are slowed, the clinician is not.
        if claim.known_address {
            return Ok(true);
        }
        let every = Duration::from_std(crate::auth::AccountTries::EVERY).unwrap_or(Duration::seconds(30));
        Ok(self.store.take_account_try(practice, subject, self.now(), every, crate::auth::AccountTries::BURST).await?)
    }

    /// A claimed try at a password: the one check every password path makes (sign-in, the
    /// current password before a change, the re-check before a release). `hash` is the
    /// account's, or `None` when there is none; the same argon2 work is done in every case.
    pub(crate) async fn try_password(
        &self,
        practice: PracticeId,
        subject: &Subject,
        from: &Client,
        hash: Option<&str>,
        password: &str,
    ) -> AppResult<Tried> {
        let claimed = self.claim_try(practice, subject, from).await?;
        let check = hash.filter(|_| claimed).unwrap_or(NO_ACCOUNT_HASH);
        let right = password.chars().count() <= PASSWORD_MAX_CHARS
            && verify_password_off_thread(password, check).await
            && hash.is_some();
        Ok(match (claimed, right) {
            (false, _) => Tried::Refused,
            (true, false) => Tried::Wrong,
            (true, true) => Tried::Right,
        })
    }

    /// The credential was right and the sign-in is complete: tries from this address count
    /// from nothing again.
    pub(crate) async fn clear_tries(&self, practice: PracticeId, subject: &Subject, from: &Client) -> AppResult<()> {
        Ok(self.store.clear_credential_tries(practice, subject, &from.key(), self.now()).await?)
    }

    /// Checks an authenticator code and accepts its time step once (RFC 6238 5.2), after a
    /// claimed try. `Err(why)` for the audit when it is not accepted.
    pub(crate) async fn accept_code(
        &self,
        practice: PracticeId,
        login: TotpLogin,
        secret: &str,
        code: &str,
    ) -> AppResult<Result<(), &'static str>> {
        let Some(step) = code_step(secret, code, self.now())? else { return Ok(Err("wrong code")) };
        if !self.store.use_totp_step(practice, login, step).await? {
            return Ok(Err("code used before"));
        }
        Ok(Ok(()))
    }

    /// Step one: the password. On success, a second-factor session starts. The try is claimed
    /// before the password is checked, and a try made while a wait is due is refused unchecked
    /// with the same answer as a wrong password.
    pub async fn sign_in(
        &self,
        ods: Option<&str>,
        username: &str,
        password: &str,
        from: &Client,
    ) -> AppResult<SessionStart> {
        if username.trim().is_empty() || password.is_empty() {
            return Err(AppError::BadRequest("Enter your username and password".into()));
        }
        if password.chars().count() > PASSWORD_MAX_CHARS {
            return Err(AppError::Unauthenticated(WRONG_CREDENTIALS.into()));
        }
        let practice = self.sign_in_practice(ods).await?;
        let subject = Subject::staff(username);
        let staff = match normalise_username(username) {
            Some(u) => self.store.staff_by_username(practice.id, &u).await?.filter(|s| s.active),
            None => None,
        };
        let tried = self
            .try_password(practice.id, &subject, from, staff.as_ref().map(|s| s.password_hash.as_str()), password)
            .await?;
        let Some(staff) = staff else { return Err(AppError::Unauthenticated(WRONG_CREDENTIALS.into())) };
        if tried != Tried::Right {
            let why = tried.why("wrong password");
            let audit =
                self.staff_audit(&staff, Action::SignInFailed, Outcome::Denied, format!("{why}; from {}", from.key()));
            self.audit.record(practice.id, audit).await?;
            return Err(AppError::Unauthenticated(WRONG_CREDENTIALS.into()));
        }
        let mut state = staff.sign_in.clone();
        let next = match (&state.totp_secret, state.totp_confirmed) {
            (Some(_), true) => SecondFactor::EnterCode,
            (existing, _) => {
                // The secret is kept sealed with the key outside the database (ASVS 2.8.3).
                let secret = match existing {
                    Some(s) => self.open_secret(s)?,
                    None => {
                        let mut raw = [0u8; 20];
                        rand::rngs::OsRng.fill_bytes(&mut raw);
                        let secret = Secret::from(raw).to_base32();
                        state.totp_secret = Some(self.seal(&secret)?);
                        secret
                    }
                };
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
            (Some(sealed), false) => {
                let secret = self.open_secret(sealed)?;
                let otpauth_uri = format!(
                    "otpauth://totp/caldicott:{}%40{}?secret={secret}&issuer=caldicott&algorithm=SHA1&digits=6&period=30",
                    staff.username, practice.ods_code
                );
                SecondFactor::Enrol { secret, otpauth_uri }
            }
            _ => SecondFactor::EnterCode,
        })
    }

    /// Step two: the code. On success the pending session is replaced by a new signed-in one
    /// (a new id and secret: the cookie changes at sign-in). A code is accepted once; a wrong
    /// code is a failed try like a wrong password.
    pub async fn second_factor(&self, cookie: &str, code: &str, from: &Client) -> AppResult<String> {
        let (session, staff) = self.load_session(cookie).await?;
        if session.stage != SessionStage::SecondFactor {
            return Err(AppError::Conflict("already signed in".into()));
        }
        let sealed = staff
            .sign_in
            .totp_secret
            .as_deref()
            .ok_or_else(|| AppError::Conflict("no second factor to check".into()))?;
        let secret = self.open_secret(sealed)?;
        let subject = Subject::staff(&staff.username);
        let verdict = if self.claim_try(staff.practice, &subject, from).await? {
            self.accept_code(staff.practice, TotpLogin::Staff(staff.id), &secret, code).await?
        } else {
            Err("try refused unchecked: waiting after wrong tries")
        };
        if let Err(why) = verdict {
            let audit =
                self.staff_audit(&staff, Action::SignInFailed, Outcome::Denied, format!("{why}; from {}", from.key()));
            self.audit.record(staff.practice, audit).await?;
            return Err(AppError::Unauthenticated(WRONG_CODE.into()));
        }
        self.clear_tries(staff.practice, &subject, from).await?;
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

    /// The signed-in member of staff behind a session cookie. The request counts as activity: it
    /// keeps the session from ending when idle.
    pub async fn signed_in(&self, cookie: &str) -> AppResult<SignedIn> {
        self.signed_in_as(cookie, true).await
    }

    /// As [`App::signed_in`], for what a page asks by itself while it is open (the unread count):
    /// not activity, so an unattended screen still signs out when idle.
    pub async fn signed_in_quietly(&self, cookie: &str) -> AppResult<SignedIn> {
        self.signed_in_as(cookie, false).await
    }

    /// How long the session behind a cookie has before it ends, idle or at its end of life, in
    /// whole seconds; asking is not activity. A session that has ended is `Unauthenticated`.
    pub async fn session_seconds_left(&self, cookie: &str) -> AppResult<i64> {
        let (session, _) = self.load_session(cookie).await?;
        if session.stage != SessionStage::SignedIn {
            return Err(AppError::Unauthenticated("Finish signing in with your security code.".into()));
        }
        let now = self.now();
        let idle_ends = session.last_seen_at + caldicott_core::staff::SESSION_IDLE;
        Ok((idle_ends.min(session.expires_at) - now).num_seconds().max(0))
    }

    async fn signed_in_as(&self, cookie: &str, activity: bool) -> AppResult<SignedIn> {
        let (session, staff) = self.load_session(cookie).await?;
        if session.stage != SessionStage::SignedIn {
            return Err(AppError::Unauthenticated("Finish signing in with your security code.".into()));
        }
        let now = self.now();
        if activity && now - session.last_seen_at >= TOUCH_EVERY {
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
