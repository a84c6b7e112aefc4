//! Patient-facing services: linkage credentials issued at the practice, local patient accounts
//! made with them, patient sign-in and sessions, "my record" for the patient or for someone they
//! act for as a proxy, and who has viewed the record.
//!
//! What a patient or proxy sees is exactly the engine's online view: hidden entries leave no
//! trace (no count, no gap, no "some entries are hidden"), and the reason a viewer sees no record
//! is given in words that never reveal a clinical decision (a 104 code, a redaction).
//!
//! The browser holds `p1_<practice id><session id><secret>`; the store keeps only the secret's
//! SHA-256.

use crate::auth::{hash_password_off_thread, Client};
use crate::permit;
use crate::record::{decode_cursor, PageRequest};
use crate::settings::FieldProblem;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_core::access::*;
use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::credentials::{check_new_password, Subject, TotpLogin, PASSWORD_MAX_CHARS};
use caldicott_core::entry::{Entry, Section};
use caldicott_core::ids::*;
use caldicott_core::online::*;
use caldicott_core::patient::Patient;
use caldicott_core::permissions::Permission;
use caldicott_core::practice::Practice;
use caldicott_core::staff::{Role, SessionStage};
use caldicott_core::visibility::{proxy_link_lapse, proxy_link_next_lapse, Shown, Withheld};
use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use uuid::Uuid;

const PREFIX: &str = "p1_";
/// One answer for a wrong password, an unknown username and a try made too soon after others.
const WRONG_CREDENTIALS: &str =
    "The username or password is not right, or there have been several wrong tries: wait a minute, then try again.";
/// One answer for a wrong code, a code used before and a try made too soon after others.
const WRONG_CODE: &str = "That code is not right, or it has been used already, or there have been several wrong \
tries: wait a minute, then enter the code your app shows now.";
pub(crate) const NOT_MATCHED: &str =
    "These details do not match our records. Check the letter from your practice, your last name and your date of birth.";
/// Letters and digits that cannot be mistaken for one another on a printed letter.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

pub(crate) fn code(len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// Upper case, without spaces or dashes: how a typed Account ID or Linkage Key is compared.
pub(crate) fn normalise_code(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

pub(crate) fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// A signed-in patient: the holder of one online account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientPrincipal {
    pub practice: PracticeId,
    pub account: AccountId,
    pub holder: PatientId,
    pub identity: IdentityLevel,
    pub name: String,
}

impl PatientPrincipal {
    /// The holder of `account`, who is `patient`.
    pub fn of(practice: PracticeId, account: &OnlineAccount, patient: &Patient) -> Self {
        Self {
            practice,
            account: account.id,
            holder: patient.id,
            identity: account.identity,
            name: patient.name.given.clone(),
        }
    }

    /// The audit actor: the account holder, as a proxy when acting through a link.
    pub fn actor(&self, link: Option<&ProxyLink>) -> Actor {
        match link {
            None => Actor { kind: ActorKind::Patient, id: self.account.to_string(), role: "patient".into() },
            Some(l) => Actor { kind: ActorKind::Proxy, id: self.account.to_string(), role: format!("proxy/{}", l.id) },
        }
    }
}

/// The first step of a local sign-in: a session cookie, signed in or waiting for a code.
#[derive(Debug, Clone)]
pub struct PatientSignInStep {
    pub cookie: String,
    pub needs_code: bool,
}

/// A live patient session.
#[derive(Debug, Clone)]
pub struct PatientSignedIn {
    pub who: PatientPrincipal,
    pub session: SessionId,
    pub csrf_token: String,
    pub practice_name: String,
}

/// The letter staff print for a patient: shown once, the key is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkageLetter {
    pub practice_name: String,
    pub practice_telephone: String,
    pub ods_code: String,
    pub account_id: String,
    pub linkage_key: String,
    pub patient_name: String,
    pub nhs_number: String,
    pub identity: IdentityLevel,
    pub issued_on: NaiveDate,
    pub use_by: NaiveDate,
    /// A password letter: the username of the account it sets a new password for (kept).
    pub username: Option<String>,
}

/// The sign-up form as typed.
#[derive(Debug, Clone, Default)]
pub struct SignUp {
    pub ods_code: String,
    pub account_id: String,
    pub linkage_key: String,
    pub family: String,
    pub birth_day: String,
    pub birth_month: String,
    pub birth_year: String,
    pub username: String,
    pub password: String,
}

/// Someone whose services the signed-in person may use: themselves, or a patient they act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `None` for the person themselves.
    pub link: Option<ProxyLinkId>,
    pub name: String,
    pub relationship: Option<String>,
    /// What they may do, in words; or why they cannot now.
    pub scope: Vec<String>,
    pub unavailable: Option<String>,
    /// A change coming soon (a review age, the 16th birthday, an end date).
    pub notice: Option<String>,
}

/// How many days before a proxy link lapses by itself the proxy and the patient are told (R16).
pub const PROXY_NOTICE_DAYS: i64 = 28;

fn long(d: NaiveDate) -> String {
    d.format("%-d %B %Y").to_string()
}

/// Why a link does not work now, in words for the proxy or the patient (never clinical).
fn lapse_words(w: &Withheld, who: &str) -> String {
    match w {
        Withheld::ProxySuspendedForReview { age, on } => format!(
            "Paused since {}, when {who} turned {age}: the practice reviews access at this age. Contact the practice.",
            long(*on)
        ),
        Withheld::ProxySuspendedAtSixteen { on } => {
            format!("Ended on {}, when {who} turned 16. From 16, {who} decides who can act for them.", long(*on))
        }
        Withheld::ProxyEnded { on } => format!("Ended on {}. Contact the practice.", long(*on)),
        Withheld::ProxyNotStarted { on } => format!("Starts on {}.", long(*on)),
        _ => "Suspended by the practice. Contact the practice.".into(),
    }
}

/// One line of "people you act for" (`shown` is the patient) or "people who act for you"
/// (`shown` is the proxy): what the link allows, why it does not work now, or what is coming.
fn service_line(
    l: &ProxyLink,
    patient: &Patient,
    shown: &Patient,
    practice: &caldicott_core::practice::OnlineServicesSettings,
    today: NaiveDate,
    who: &str,
    whose_access: &str,
) -> Service {
    let unavailable = proxy_link_lapse(l, patient, practice, today).map(|w| lapse_words(&w, who));
    let notice = if unavailable.is_none() {
        proxy_link_next_lapse(l, patient, practice, today, PROXY_NOTICE_DAYS)
            .map(|w| notice_words(&w, whose_access, who))
    } else {
        None
    };
    Service {
        link: Some(l.id),
        name: format!("{} {}", shown.name.given, shown.name.family),
        relationship: Some(l.relationship.clone()),
        scope: scope_words(l),
        unavailable,
        notice,
    }
}

fn notice_words(w: &Withheld, whose_access: &str, who: &str) -> String {
    match w {
        Withheld::ProxySuspendedForReview { age, on } => {
            format!("{whose_access} {who} will be paused for review on {}, when {who} turns {age}.", long(*on))
        }
        Withheld::ProxySuspendedAtSixteen { on } => {
            format!("{whose_access} {who} will end on {}, when {who} turns 16.", long(*on))
        }
        Withheld::ProxyEnded { on } => format!("{whose_access} {who} ends on {}.", long(*on)),
        _ => String::new(),
    }
}

/// One page of a record as its online viewer sees it.
#[derive(Debug, Clone)]
pub struct MyRecordPage {
    pub whose: String,
    /// Whose record it is, for a printed page.
    pub holder: RecordHolder,
    pub link: Option<ProxyLinkId>,
    /// Set when the viewer sees no record at all: a sentence for the viewer.
    pub no_record: Option<String>,
    /// The entries the engine shows this viewer: nothing else can be put here.
    pub entries: Vec<Shown<Entry>>,
    pub next_cursor: Option<String>,
}

/// A section's name in an audit event ("all" for the whole record).
fn section_name(s: Option<Section>) -> &'static str {
    s.map_or("all", Section::as_str)
}

/// Whose record it is, as a printed page names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHolder {
    /// "Given FAMILY".
    pub name: String,
    /// Spaced 3-3-4, as the NHS writes it.
    pub nhs_number: String,
    pub birth_date: NaiveDate,
}

impl RecordHolder {
    pub(crate) fn of(p: &Patient) -> Self {
        Self {
            name: format!("{} {}", p.name.given, p.name.family.to_uppercase()),
            nhs_number: p.nhs_number.to_string(),
            birth_date: p.date_of_birth,
        }
    }
}

/// A whole record (or one section of it) as its online viewer sees it, to print or save: whose
/// it is and every entry shown.
#[derive(Debug, Clone)]
pub struct MyRecordPrintout {
    pub holder: RecordHolder,
    /// Set when the viewer sees no record at all: a sentence for the viewer.
    pub no_record: Option<String>,
    /// The entries the engine shows this viewer, newest first: nothing else can be put here.
    pub entries: Vec<Shown<Entry>>,
}

/// One look at the record, as the patient sees it in "who viewed my record".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityLine {
    pub at: DateTime<Utc>,
    pub who: String,
    pub what: &'static str,
}

/// The words a viewer sees when they see no record. They never name a clinical reason.
pub(crate) fn no_record_sentence(w: Withheld, proxy: bool) -> String {
    match w {
        Withheld::IdentityNotVerified { .. } => {
            "To see a GP record online, the practice needs to check who you are in full first. You can still book \
             appointments and send messages. Take photo ID, such as a passport or driving licence, to the practice, \
             or prove who you are with NHS login."
                .into()
        }
        _ if proxy => {
            "You do not have online access to this person's GP record. Contact the practice to ask about it.".into()
        }
        _ => "You do not have online access to your GP record at the moment. Contact the practice to ask about it."
            .into(),
    }
}

fn scope_words(l: &ProxyLink) -> Vec<String> {
    let mut s = Vec::new();
    if l.scope.appointments {
        s.push("Appointments".to_owned());
    }
    if l.scope.prescriptions {
        s.push("Repeat prescriptions".to_owned());
    }
    if l.scope.record != AccessLevel::None {
        s.push(format!("GP record ({})", l.scope.record.display().to_lowercase()));
    }
    s
}

fn parse_cookie(value: &str) -> Option<(PracticeId, SessionId, String)> {
    let rest = value.trim().strip_prefix(PREFIX)?;
    if rest.len() < 64 || !rest.is_char_boundary(64) {
        return None;
    }
    Some((
        PracticeId::from_uuid(Uuid::try_parse(&rest[..32]).ok()?),
        SessionId::from_uuid(Uuid::try_parse(&rest[32..64]).ok()?),
        rest[64..].to_owned(),
    ))
}

impl App {
    pub(crate) fn patient_audit(
        &self,
        actor: Actor,
        patient: Option<PatientId>,
        action: Action,
        entity: String,
        outcome: Outcome,
        detail: impl Into<String>,
    ) -> AuditRecord {
        AuditRecord::new(AuditEventId::from_uuid(new_id()), self.now(), actor, patient, action, entity, outcome, detail)
    }

    /// An audit record of something the holder of an online account did with it (signing in
    /// or out, their password, two-step sign-in), timed now.
    pub(crate) fn account_audit(
        &self,
        account: AccountId,
        holder: PatientId,
        action: Action,
        outcome: Outcome,
        detail: impl Into<String>,
    ) -> AuditRecord {
        let actor = Actor { kind: ActorKind::Patient, id: account.to_string(), role: "patient".into() };
        self.patient_audit(actor, Some(holder), action, format!("account/{account}"), outcome, detail)
    }

    /// A claimed try at a code from the authenticator of `login`: `Err(why)` when the try was
    /// refused unchecked, the code is wrong, or it was used before.
    async fn code_try(
        &self,
        practice: PracticeId,
        subject: &Subject,
        from: &Client,
        login: TotpLogin,
        secret: &str,
        code: &str,
    ) -> AppResult<Result<(), &'static str>> {
        if self.claim_try(practice, subject, from).await? {
            self.accept_code(practice, login, secret, code).await
        } else {
            Ok(Err("try refused unchecked: waiting after wrong tries"))
        }
    }

    /// Issues linkage credentials for a registered patient after staff have checked their
    /// identity: P9 for a check with photo ID in person, P5 otherwise (appointments and messages
    /// only, R22). Earlier unused credentials for the patient stop working.
    pub async fn issue_linkage(&self, who: &StaffPrincipal, nhs: &str, identity: &str) -> AppResult<LinkageLetter> {
        permit(who, Permission::IssuePatientCredentials)?;
        let identity = match identity {
            "P9" => IdentityLevel::P9,
            "P5" => IdentityLevel::P5,
            _ => {
                return Err(AppError::BadRequest(
                    "Choose how the patient's identity was checked before issuing credentials".into(),
                ))
            }
        };
        let patient = self.patient_here(who, nhs).await?;
        let today = self.today();
        if patient.registration_on(today).is_none() || patient.is_deceased_on(today) {
            return Err(AppError::Conflict("online credentials are only issued to patients registered here".into()));
        }
        self.linkage_letter(who, &patient, identity, None).await
    }

    /// Makes and records a letter for `patient`: a sign-up letter, or (with `resets`) a password
    /// letter for that existing local account. Earlier letters for the patient stop working, and
    /// apps linked with them lose their access (R21).
    pub(crate) async fn linkage_letter(
        &self,
        who: &StaffPrincipal,
        patient: &Patient,
        identity: IdentityLevel,
        resets: Option<(AccountId, String)>,
    ) -> AppResult<LinkageLetter> {
        let today = self.today();
        let practice =
            self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("your practice".into()))?;
        let account_id = code(10);
        let key = code(15);
        let record = LinkageKey {
            account_ref: account_id.clone(),
            holder: patient.id,
            key_hash: sha256(&key),
            identity,
            issued_at: self.now(),
            issued_by: who.name.clone(),
            used_at: None,
            revoked_at: None,
            resets: resets.as_ref().map(|(a, _)| *a),
        };
        let audit = match &resets {
            None => self.audit_record(
                who,
                Some(patient.id),
                Action::LinkageIssue,
                format!("linkage/{account_id}"),
                Outcome::Success,
                format!("identity {} checked by staff", identity.as_str()),
            ),
            Some((account, username)) => self.audit_record(
                who,
                Some(patient.id),
                Action::PatientPasswordLetterIssue,
                format!("linkage/{account_id} account/{account}"),
                Outcome::Success,
                format!("password letter for username {username}; identity checked by staff"),
            ),
        };
        self.store.issue_linkage_key(who.practice, &record, &audit).await?;
        Ok(LinkageLetter {
            practice_name: practice.name,
            practice_telephone: practice.telephone,
            ods_code: practice.ods_code.as_str().to_owned(),
            account_id,
            linkage_key: key
                .as_bytes()
                .chunks(5)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-"),
            patient_name: format!("{} {}", patient.name.given, patient.name.family),
            nhs_number: patient.nhs_number.to_string(),
            identity,
            issued_on: today,
            use_by: caldicott_core::uk::uk_date(self.now() + LINKAGE_VALIDITY),
            username: resets.map(|(_, u)| u),
        })
    }

    /// A patient makes their own account with the credentials from their letter, and is signed
    /// in. Every mismatch gets the same message, so the form reveals nothing about a record.
    pub async fn patient_sign_up(&self, s: &SignUp) -> AppResult<Result<String, Vec<FieldProblem>>> {
        let mut problems = Vec::new();
        let username = s.username.trim().to_ascii_lowercase();
        if !(3..=64).contains(&username.len())
            || !username.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        {
            problems.push(FieldProblem {
                field: "username",
                message: "Choose a username of 3 to 64 letters, digits, dots, dashes or @".into(),
            });
        }
        if let Err(message) = check_new_password(&s.password) {
            problems.push(FieldProblem { field: "password", message });
        }
        let dob = match (
            s.birth_day.trim().parse::<u32>(),
            s.birth_month.trim().parse::<u32>(),
            s.birth_year.trim().parse::<i32>(),
        ) {
            (Ok(d), Ok(m), Ok(y)) => NaiveDate::from_ymd_opt(y, m, d),
            _ => None,
        };
        if dob.is_none() {
            problems.push(FieldProblem {
                field: "birth_day",
                message: "Enter your date of birth, for example 31 1 1980".into(),
            });
        }
        for (field, value, what) in [
            ("ods_code", &s.ods_code, "the practice ODS code"),
            ("account_id", &s.account_id, "the Account ID"),
            ("linkage_key", &s.linkage_key, "the Linkage Key"),
            ("family", &s.family, "your last name"),
        ] {
            if value.trim().is_empty() {
                problems.push(FieldProblem { field, message: format!("Enter {what}") });
            }
        }
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        let not_matched = || Ok(Err(vec![FieldProblem { field: "account_id", message: NOT_MATCHED.into() }]));
        let Ok(practice) = self.sign_in_practice(Some(&s.ods_code)).await else { return not_matched() };
        let now = self.now();
        let Some(key) = self.store.linkage_key(practice.id, &normalise_code(&s.account_id)).await? else {
            return not_matched();
        };
        let Some(patient) = self.store.patient(practice.id, key.holder).await? else { return not_matched() };
        // A password letter resets an existing account; it never makes a second one.
        let matches = key.is_usable_at(now)
            && key.resets.is_none()
            && sha256(&normalise_code(&s.linkage_key)) == key.key_hash
            && patient.name.family.trim().eq_ignore_ascii_case(s.family.trim())
            && Some(patient.date_of_birth) == dob
            && patient.registration_on(caldicott_core::uk::uk_date(now)).is_some();
        if !matches {
            return not_matched();
        }
        let account = OnlineAccount {
            id: AccountId::from_uuid(new_id()),
            holder: patient.id,
            kind: AccountKind::Local,
            identity: key.identity,
            created_at: now,
        };
        let login = PatientLogin {
            account: account.id,
            username: username.clone(),
            password_hash: hash_password_off_thread(&s.password).await?,
            failed_sign_ins: 0,
            locked_until: None,
            totp_secret: None,
            totp_confirmed: false,
        };
        let who = PatientPrincipal::of(practice.id, &account, &patient);
        let audit = self.patient_audit(
            who.actor(None),
            Some(patient.id),
            Action::OnlineAccountCreate,
            format!("account/{}", account.id),
            Outcome::Success,
            format!("local account with linkage {}, identity {}", key.account_ref, key.identity.as_str()),
        );
        match self.store.create_patient_login(practice.id, &account, &login, &key.account_ref, &audit).await {
            Ok(()) => {}
            Err(caldicott_store::StoreError::Conflict(caldicott_store::Conflict::UsernameTaken)) => {
                return Ok(Err(vec![FieldProblem {
                    field: "username",
                    message: "That username is taken: choose another".into(),
                }]))
            }
            Err(caldicott_store::StoreError::Conflict(_)) => return not_matched(),
            Err(e) => return Err(e.into()),
        }
        Ok(Ok(self.start_patient_session(&practice, &who).await?))
    }

    pub(crate) async fn start_patient_session(&self, practice: &Practice, who: &PatientPrincipal) -> AppResult<String> {
        self.new_patient_session(practice, who, SessionStage::SignedIn).await
    }

    async fn new_patient_session(
        &self,
        practice: &Practice,
        who: &PatientPrincipal,
        stage: SessionStage,
    ) -> AppResult<String> {
        let now = self.now();
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let secret = URL_SAFE_NO_PAD.encode(raw);
        let mut csrf = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut csrf);
        let session = PatientSession {
            id: SessionId::from_uuid(new_id()),
            account: who.account,
            secret_hash: sha256(&secret),
            csrf_token: URL_SAFE_NO_PAD.encode(csrf),
            stage,
            created_at: now,
            last_seen_at: now,
            expires_at: now
                + if stage == SessionStage::SignedIn {
                    PATIENT_SESSION_LIFETIME
                } else {
                    chrono::Duration::minutes(10)
                },
            ended_at: None,
        };
        let audit = self.account_audit(
            who.account,
            who.holder,
            Action::PatientSignIn,
            Outcome::Success,
            if stage == SessionStage::SignedIn { "signed in" } else { "password accepted; security code next" },
        );
        self.store.create_patient_session(practice.id, &session, &audit).await?;
        Ok(format!("{PREFIX}{}{}{secret}", practice.id.as_uuid().simple(), session.id.as_uuid().simple()))
    }

    /// Signs a patient in with a local account. The try is claimed before the password is
    /// checked; wrong tries make the next one from the same address wait longer (never a
    /// lock-out). With two-step sign-in on, the session waits for an authenticator code.
    pub async fn patient_sign_in(
        &self,
        ods: Option<&str>,
        username: &str,
        password: &str,
        from: &Client,
    ) -> AppResult<PatientSignInStep> {
        if username.trim().is_empty() || password.is_empty() {
            return Err(AppError::BadRequest("Enter your username and password".into()));
        }
        if password.chars().count() > PASSWORD_MAX_CHARS {
            return Err(AppError::Unauthenticated(WRONG_CREDENTIALS.into()));
        }
        let practice = self.sign_in_practice(ods).await?;
        let subject = Subject::patient(username);
        let found = self.store.patient_login(practice.id, &username.trim().to_ascii_lowercase()).await?;
        let hash = found.as_ref().map(|(l, _)| l.password_hash.as_str());
        let tried = self.try_password(practice.id, &subject, from, hash, password).await?;
        let Some((login, account)) = found else { return Err(AppError::Unauthenticated(WRONG_CREDENTIALS.into())) };
        if tried != crate::session::Tried::Right {
            let why = tried.why("wrong password");
            let audit = self.account_audit(
                account.id,
                account.holder,
                Action::PatientSignInFailed,
                Outcome::Denied,
                format!("{why}; from {}", from.key()),
            );
            self.audit.record(practice.id, audit).await?;
            return Err(AppError::Unauthenticated(WRONG_CREDENTIALS.into()));
        }
        let needs_code = login.totp_confirmed && login.totp_secret.is_some();
        if !needs_code {
            self.clear_tries(practice.id, &subject, from).await?;
        }
        let patient = self
            .store
            .patient(practice.id, account.holder)
            .await?
            .ok_or_else(|| AppError::Unauthenticated(WRONG_CREDENTIALS.into()))?;
        let who = PatientPrincipal::of(practice.id, &account, &patient);
        let stage = if needs_code { SessionStage::SecondFactor } else { SessionStage::SignedIn };
        Ok(PatientSignInStep { cookie: self.new_patient_session(&practice, &who, stage).await?, needs_code })
    }

    /// Step two of a two-step sign-in: the authenticator code. A new signed-in session replaces
    /// the waiting one (the cookie changes).
    pub async fn patient_second_factor(&self, cookie: &str, code: &str, from: &Client) -> AppResult<String> {
        let expired = || AppError::Unauthenticated("Your sign-in took too long. Sign in again.".into());
        let (practice_id, session_id, secret) = parse_cookie(cookie).ok_or_else(expired)?;
        let (session, account) = self.store.patient_session(practice_id, session_id).await?.ok_or_else(expired)?;
        let now = self.now();
        if sha256(&secret) != session.secret_hash
            || !session.is_live_at(now)
            || session.stage != SessionStage::SecondFactor
        {
            return Err(expired());
        }
        let login = self.store.patient_login_of(practice_id, account.id).await?.ok_or_else(expired)?;
        let secret = self.open_secret(login.totp_secret.as_deref().ok_or_else(expired)?)?;
        let subject = Subject::patient(&login.username);
        let verdict = self.code_try(practice_id, &subject, from, TotpLogin::Patient(account.id), &secret, code).await?;
        if let Err(why) = verdict {
            let audit = self.account_audit(
                account.id,
                account.holder,
                Action::PatientSignInFailed,
                Outcome::Denied,
                format!("{why}; from {}", from.key()),
            );
            self.audit.record(practice_id, audit).await?;
            return Err(AppError::Unauthenticated(WRONG_CODE.into()));
        }
        self.clear_tries(practice_id, &subject, from).await?;
        let audit = self.account_audit(
            account.id,
            account.holder,
            Action::PatientSignIn,
            Outcome::Success,
            "security code accepted",
        );
        self.store.end_patient_session(practice_id, session.id, now, &audit).await?;
        let practice = self.store.practice(practice_id).await?.ok_or_else(expired)?;
        let patient = self.store.patient(practice_id, account.holder).await?.ok_or_else(expired)?;
        let who = PatientPrincipal::of(practice_id, &account, &patient);
        self.start_patient_session(&practice, &who).await
    }

    /// Whether the signed-in patient's local login asks for a code (`None`: no local login,
    /// for example an NHS login account).
    pub async fn two_step_status(&self, me: &PatientPrincipal) -> AppResult<Option<bool>> {
        Ok(self.store.patient_login_of(me.practice, me.account).await?.map(|l| l.totp_confirmed))
    }

    /// Starts turning on two-step sign-in: a new secret for an authenticator app, and its
    /// otpauth URI for a QR code. Nothing changes at sign-in until a code confirms it.
    pub async fn two_step_begin(&self, me: &PatientPrincipal) -> AppResult<(String, String)> {
        let login = self
            .store
            .patient_login_of(me.practice, me.account)
            .await?
            .ok_or_else(|| AppError::Conflict("this account signs in through NHS login".into()))?;
        if login.totp_confirmed {
            return Err(AppError::Conflict("two-step sign-in is already on".into()));
        }
        let mut raw = [0u8; 20];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let secret = totp_rs::Secret::from(raw).to_base32();
        let audit = self.account_audit(
            me.account,
            me.holder,
            Action::SecondFactorEnrolled,
            Outcome::Success,
            "secret issued, not yet confirmed",
        );
        self.store.set_patient_totp(me.practice, me.account, Some(&self.seal(&secret)?), false, &audit).await?;
        let uri = format!(
            "otpauth://totp/GP%20services:{}?secret={secret}&issuer=GP%20services&algorithm=SHA1&digits=6&period=30",
            login.username
        );
        Ok((secret, uri))
    }

    /// Confirms the authenticator with a code from it: from now on sign-in asks for a code.
    pub async fn two_step_confirm(&self, me: &PatientPrincipal, code: &str, from: &Client) -> AppResult<()> {
        let secret = self.two_step_secret(me, code, false, from).await?;
        self.set_two_step(me, Some(&secret), "two-step sign-in on").await
    }

    /// Turns two-step sign-in off, with a current code as proof.
    pub async fn two_step_off(&self, me: &PatientPrincipal, code: &str, from: &Client) -> AppResult<()> {
        self.two_step_secret(me, code, true, from).await?;
        self.set_two_step(me, None, "two-step sign-in off").await
    }

    /// The authenticator secret of the signed-in patient's login, once `code` proves it (`on`:
    /// two-step sign-in must already be on). The code is a try like a sign-in's: claimed first,
    /// and accepted once.
    async fn two_step_secret(&self, me: &PatientPrincipal, code: &str, on: bool, from: &Client) -> AppResult<String> {
        let login = self
            .store
            .patient_login_of(me.practice, me.account)
            .await?
            .ok_or_else(|| AppError::Conflict("this account signs in through NHS login".into()))?;
        let sealed = login
            .totp_secret
            .clone()
            .filter(|_| login.totp_confirmed == on)
            .ok_or_else(|| AppError::Conflict(if on { "two-step sign-in is off" } else { "start again" }.into()))?;
        let secret = self.open_secret(&sealed)?;
        let subject = Subject::patient(&login.username);
        let verdict = self.code_try(me.practice, &subject, from, TotpLogin::Patient(me.account), &secret, code).await?;
        if let Err(why) = verdict {
            let audit = self.account_audit(
                me.account,
                me.holder,
                Action::PatientSignInFailed,
                Outcome::Denied,
                format!("two-step {}: {why}; from {}", if on { "off" } else { "on" }, from.key()),
            );
            self.audit.record(me.practice, audit).await?;
            return Err(AppError::BadRequest(WRONG_CODE.into()));
        }
        self.clear_tries(me.practice, &subject, from).await?;
        Ok(sealed)
    }

    async fn set_two_step(&self, me: &PatientPrincipal, secret: Option<&str>, what: &str) -> AppResult<()> {
        let audit = self.account_audit(me.account, me.holder, Action::SecondFactorEnrolled, Outcome::Success, what);
        Ok(self.store.set_patient_totp(me.practice, me.account, secret, secret.is_some(), &audit).await?)
    }

    /// The signed-in patient behind a session cookie.
    pub async fn patient_signed_in(&self, cookie: &str) -> AppResult<PatientSignedIn> {
        let expired = || AppError::Unauthenticated("Your session has ended. Sign in again.".into());
        let (practice_id, session_id, secret) = parse_cookie(cookie).ok_or_else(expired)?;
        let (session, account) = self.store.patient_session(practice_id, session_id).await?.ok_or_else(expired)?;
        let now = self.now();
        if sha256(&secret) != session.secret_hash || !session.is_live_at(now) || session.stage != SessionStage::SignedIn
        {
            return Err(expired());
        }
        if now - session.last_seen_at >= chrono::Duration::seconds(60) {
            self.store.touch_patient_session(practice_id, session.id, now).await?;
        }
        let practice = self.store.practice(practice_id).await?.ok_or_else(expired)?;
        let patient = self.store.patient(practice_id, account.holder).await?.ok_or_else(expired)?;
        if patient.registration_on(caldicott_core::uk::uk_date(now)).is_none() {
            // R6: a patient who has left has no online services here.
            return Err(AppError::Unauthenticated("You are no longer registered at this practice.".into()));
        }
        Ok(PatientSignedIn {
            who: PatientPrincipal::of(practice_id, &account, &patient),
            session: session.id,
            csrf_token: session.csrf_token,
            practice_name: practice.name,
        })
    }

    pub async fn patient_sign_out(&self, cookie: &str) -> AppResult<()> {
        let Ok(me) = self.patient_signed_in(cookie).await else { return Ok(()) };
        let audit = self.account_audit(me.who.account, me.who.holder, Action::PatientSignOut, Outcome::Success, "");
        self.store.end_patient_session(me.who.practice, me.session, self.now(), &audit).await?;
        Ok(())
    }

    /// The proxy link through which `me` acts for someone: it must be theirs.
    pub(crate) async fn my_link(&self, me: &PatientPrincipal, id: ProxyLinkId) -> AppResult<ProxyLink> {
        self.store
            .proxy_link(me.practice, id)
            .await?
            .filter(|l| l.proxy == me.holder)
            .ok_or_else(|| AppError::NotFound("you do not act for anyone through that link".into()))
    }

    /// Whose services the signed-in person may use: their own, and each person they act for,
    /// with a notice when a link will lapse soon (R16).
    pub async fn my_services(&self, me: &PatientPrincipal) -> AppResult<Vec<Service>> {
        let today = self.today();
        let practice = self.store.practice(me.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let mut out = vec![Service {
            link: None,
            name: me.name.clone(),
            relationship: None,
            scope: Vec::new(),
            unavailable: None,
            notice: None,
        }];
        for l in self.store.proxy_links_for_proxy(me.practice, me.holder).await? {
            if matches!(l.status, ProxyStatus::Revoked { .. } | ProxyStatus::Refused { .. }) {
                continue;
            }
            let Some(p) = self.store.patient(me.practice, l.patient).await? else { continue };
            if p.registration_on(today).is_none() {
                continue;
            }
            out.push(service_line(&l, &p, &p, &practice.online, today, &p.name.given, "Your access for"));
        }
        Ok(out)
    }

    /// The people who act for the signed-in patient, with what each may do and any coming change.
    pub async fn acting_for_me(&self, me: &PatientPrincipal) -> AppResult<Vec<Service>> {
        let today = self.today();
        let practice = self.store.practice(me.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let patient =
            self.store.patient(me.practice, me.holder).await?.ok_or_else(|| AppError::NotFound("patient".into()))?;
        let mut out = Vec::new();
        for l in self.store.proxy_links_for_patient(me.practice, me.holder).await? {
            if matches!(l.status, ProxyStatus::Revoked { .. } | ProxyStatus::Refused { .. }) {
                continue;
            }
            let Some(p) = self.store.patient(me.practice, l.proxy).await? else { continue };
            let whose_access = format!("{}'s access for", p.name.given);
            out.push(service_line(&l, &patient, &p, &practice.online, today, "you", &whose_access));
        }
        Ok(out)
    }

    /// A page of the record the signed-in person sees: their own, or (with `link`) that of the
    /// person they act for, within the proxy's scope. Audited as the patient or as the proxy.
    pub async fn my_record(
        &self,
        me: &PatientPrincipal,
        link: Option<ProxyLinkId>,
        page: &PageRequest,
    ) -> AppResult<MyRecordPage> {
        let limit = page.limit()? as usize;
        let after = page.cursor.as_deref().map(decode_cursor).transpose()?;
        let (target, view) = self.my_outside_view(me, link).await?;
        let whose = if view.link.is_some() {
            format!("{} {}", view.l.patient.name.given, view.l.patient.name.family)
        } else {
            "Your".into()
        };
        let (entries, next_cursor) = view
            .page(self, page.section, after, limit)
            .await?
            .audited(self, me.practice, |(entries, _)| {
                self.online_look(me, &view, target, format!("section={}", section_name(page.section)), entries.len())
            })
            .await?;
        let (link, policy) = (view.link, view.policy);
        Ok(MyRecordPage {
            whose,
            holder: RecordHolder::of(&view.l.patient),
            link: link.as_ref().map(|l| l.id),
            no_record: policy.denied().map(|w| no_record_sentence(w, link.is_some())),
            entries,
            next_cursor,
        })
    }

    /// The audit event of a patient's or proxy's look at a record online: what they asked for
    /// (`what`) and how many entries they were shown.
    pub(crate) fn online_look(
        &self,
        me: &PatientPrincipal,
        view: &crate::records::outside::OutsideView,
        target: PatientId,
        what: String,
        shown: usize,
    ) -> AuditRecord {
        self.patient_audit(
            me.actor(view.link.as_ref()),
            Some(target),
            Action::RecordViewOnline,
            format!("patient/{target}"),
            Outcome::Success,
            format!("{what} entries={shown}"),
        )
    }

    /// The record the signed-in patient, or the proxy acting through `link`, looks at, and their
    /// view of it (an unknown or another's link is `NotFound`).
    pub(crate) async fn my_outside_view(
        &self,
        me: &PatientPrincipal,
        link: Option<ProxyLinkId>,
    ) -> AppResult<(PatientId, crate::records::outside::OutsideView)> {
        let link = match link {
            Some(id) => Some(self.my_link(me, id).await?),
            None => None,
        };
        let target = link.as_ref().map_or(me.holder, |l| l.patient);
        let view = self
            .outside_view(me.practice, target, link, Some(me.identity), || AppError::NotFound("record".into()))
            .await?;
        Ok((target, view))
    }

    /// The whole record (or `section`) as the signed-in patient, or the proxy acting through
    /// `link`, sees it online, for printing or saving: every entry shown, in one audited look.
    pub async fn my_record_printout(
        &self,
        me: &PatientPrincipal,
        link: Option<ProxyLinkId>,
        section: Option<Section>,
    ) -> AppResult<MyRecordPrintout> {
        let (target, view) = self.my_outside_view(me, link).await?;
        let entries = view
            .all(self, section)
            .await?
            .audited(self, me.practice, |entries| {
                self.online_look(
                    me,
                    &view,
                    target,
                    format!("printout section={}", section_name(section)),
                    entries.len(),
                )
            })
            .await?;
        Ok(MyRecordPrintout {
            holder: RecordHolder::of(&view.l.patient),
            no_record: view.policy.denied().map(|w| no_record_sentence(w, view.link.is_some())),
            entries,
        })
    }

    /// Who has looked at the signed-in patient's record: staff (by role, and by name where the
    /// practice chooses), the patient, and anyone acting for them. Only looks are listed, never
    /// changes, so nothing here hints at an entry the patient cannot see.
    pub async fn my_record_activity(&self, me: &PatientPrincipal) -> AppResult<Vec<ActivityLine>> {
        let practice = self.store.practice(me.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let events = self.store.audit_for_patient(me.practice, me.holder, 500).await?;
        let mut staff_names: HashMap<String, String> = HashMap::new();
        let mut proxy_names: HashMap<String, String> = HashMap::new();
        let mut link_names: HashMap<String, String> = HashMap::new();
        for l in self.store.proxy_links_for_patient(me.practice, me.holder).await? {
            if let Some(p) = self.store.patient(me.practice, l.proxy).await? {
                let name = format!("{} {} ({})", p.name.given, p.name.family, l.relationship);
                for a in self.store.online_accounts(me.practice, l.proxy).await? {
                    proxy_names.insert(a.id.to_string(), name.clone());
                }
                link_names.insert(format!("app for proxy link {}", l.id), name);
            }
        }
        let app_names: HashMap<String, String> =
            self.store.apps(me.practice).await?.into_iter().map(|a| (a.id.to_string(), a.name)).collect();
        let integration_names: HashMap<String, String> =
            self.store.integrations(me.practice).await?.into_iter().map(|i| (i.id.to_string(), i.name)).collect();
        let mut out = Vec::new();
        for e in events {
            let what = match e.action.as_str() {
                "record.view_staff" => "Opened your record at the practice",
                "record.preview_online" => "Checked what you see online",
                "record.view_online" => "Viewed your record online",
                "record.gp_connect_structured" => "Read your record to care for you, through GP Connect",
                "record.gp_connect_documents" => "Looked at your documents to care for you, through GP Connect",
                "appointment.gp_connect_read" => "Looked at your appointments to care for you, through GP Connect",
                _ => continue,
            };
            if e.outcome != Outcome::Success.as_str() {
                continue;
            }
            let who = match e.actor_kind.as_str() {
                "patient" if e.actor_id == me.account.to_string() => "You".to_owned(),
                "patient" => "You (another of your accounts)".to_owned(),
                "proxy" => proxy_names.get(&e.actor_id).cloned().unwrap_or_else(|| "Someone acting for you".to_owned()),
                "app" => {
                    let app = app_names.get(&e.actor_id).cloned().unwrap_or_else(|| "An app".to_owned());
                    match link_names.get(&e.actor_role) {
                        Some(proxy) => format!("{app}, an app used by {proxy}"),
                        None if e.actor_role == "app" => format!("{app}, an app linked to your record"),
                        None => format!("{app}, an app used by someone acting for you"),
                    }
                }
                "gp_connect" => crate::gp_connect::reader_named_in(&e.detail)
                    .map_or_else(|| "A clinician in another NHS service".to_owned(), str::to_owned),
                "integration" => format!(
                    "{}, a system of {}",
                    integration_names.get(&e.actor_id).cloned().unwrap_or_else(|| "A computer system".to_owned()),
                    practice.name
                ),
                "staff" => {
                    let role = Role::parse(&e.actor_role).map_or("Member of staff", Role::display);
                    let named = if practice.online.show_staff_names_to_patients {
                        if !staff_names.contains_key(&e.actor_id) {
                            let name = match e.actor_id.parse::<StaffId>() {
                                Ok(id) => self.store.staff_member(me.practice, id).await?.map(|s| s.display_name),
                                Err(_) => None,
                            };
                            staff_names.insert(e.actor_id.clone(), name.unwrap_or_default());
                        }
                        staff_names.get(&e.actor_id).cloned().filter(|n| !n.is_empty())
                    } else {
                        None
                    };
                    match named {
                        Some(n) => format!("{n}, {role}, {}", practice.name),
                        None => format!("{role}, {}", practice.name),
                    }
                }
                _ => continue,
            };
            out.push(ActivityLine { at: e.at, who, what });
        }
        let audit = self.patient_audit(
            me.actor(None),
            Some(me.holder),
            Action::PatientActivityView,
            format!("patient/{}", me.holder),
            Outcome::Success,
            format!("lines={}", out.len()),
        );
        self.audit.record(me.practice, audit).await?;
        Ok(out)
    }

    /// For tests and the demo: the record of the person behind a proxy link, by patient.
    pub async fn patient_by_id(&self, practice: PracticeId, id: PatientId) -> AppResult<Patient> {
        self.store.patient(practice, id).await?.ok_or_else(|| AppError::NotFound("patient".into()))
    }
}
