//! Passwords (ASVS 2.1, 2.5): staff and patients change their own, administrators make a
//! one-time code for a member of staff who forgot theirs, and the practice prints a password
//! letter for a patient who forgot theirs.
//!
//! The current password, and a one-time code, are credential tries like sign-in's: claimed
//! before they are checked (`App::claim_try`), so they are counted and slowed the same way.
//! Every new password follows the same rules (12 to 128 characters, typed twice), is stored as an
//! argon2id hash only, and ends the person's other sessions in the transaction that sets it. The
//! second factor is never touched here (administrators reset it separately).

use crate::auth::{hash_password_off_thread, Client};
use crate::patient_services::{code, normalise_code, sha256, LinkageLetter, PatientPrincipal, NOT_MATCHED};
use crate::permit;
use crate::settings::FieldProblem;
use crate::{App, AppError, AppResult, StaffPrincipal};
use caldicott_core::access::{AccountKind, OnlineAccount};
use caldicott_core::audit::{Action, Actor, ActorKind, Outcome};
use caldicott_core::credentials::{check_new_password_twice, Subject, RESET_CODE_CHARS, RESET_CODE_VALIDITY};
use caldicott_core::ids::{SessionId, StaffId};
use caldicott_core::permissions::Permission;
use caldicott_core::staff::{normalise_username, PasswordReset};
use chrono::{DateTime, NaiveDate, Utc};
use rand::RngCore;

/// After a password reset, the member's authenticator cannot be reset by an administrator for
/// this long: the one who saw the code never holds both factors.
pub const BOTH_FACTORS_APART: chrono::Duration = chrono::Duration::days(7);

/// One answer for a wrong current password and a try made while a wait is due.
pub const WRONG_CURRENT: &str =
    "Your current password is not right, or there have been several wrong tries: wait a minute, then try again.";
/// One answer for an unknown practice or username, a wrong, used or expired code, and a try
/// made while a wait is due.
pub const WRONG_RESET_CODE: &str = "The practice code, username or one-time code is not right, or the code has \
expired or been used, or there have been several wrong tries. Wait a minute and try again, or ask your administrator \
for a new code.";

/// A one-time code just made: shown once to the administrator, kept only as its SHA-256.
#[derive(Debug, Clone)]
pub struct ResetCode {
    /// Grouped for reading out: `ABCD-EFGH-JKLM`.
    pub code: String,
    pub username: String,
    pub name: String,
    pub expires_at: DateTime<Utc>,
}

/// The staff form at `/sign-in/reset`, as typed.
#[derive(Debug, Clone, Default)]
pub struct StaffReset {
    pub ods: String,
    pub username: String,
    pub code: String,
    pub new_password: String,
    pub new_password_again: String,
}

/// The patient form at `/my/reset`, as typed.
#[derive(Debug, Clone, Default)]
pub struct PatientReset {
    pub ods_code: String,
    pub account_id: String,
    pub linkage_key: String,
    pub family: String,
    pub birth_day: String,
    pub birth_month: String,
    pub birth_year: String,
    pub new_password: String,
    pub new_password_again: String,
}

type Checked = AppResult<Result<(), Vec<FieldProblem>>>;

fn problem(field: &'static str, message: impl Into<String>) -> Checked {
    Ok(Err(vec![FieldProblem { field, message: message.into() }]))
}

/// The rules for a new password typed twice, as a form problem.
fn new_password_problem(new: &str, again: &str) -> Option<Vec<FieldProblem>> {
    check_new_password_twice(new, again).err().map(|(field, message)| vec![FieldProblem { field, message }])
}

fn birth_date(d: &str, m: &str, y: &str) -> Option<NaiveDate> {
    match (d.trim().parse::<u32>(), m.trim().parse::<u32>(), y.trim().parse::<i32>()) {
        (Ok(d), Ok(m), Ok(y)) => NaiveDate::from_ymd_opt(y, m, d),
        _ => None,
    }
}

/// A hash of a secret nobody holds: what a member's password becomes while a reset waits.
async fn unusable_password_hash() -> AppResult<String> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    hash_password_off_thread(&hex(&raw)).await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl App {
    /// Checks a current password as a claimed try (`subject`'s), returning why it failed.
    async fn current_password_ok(
        &self,
        practice: caldicott_core::ids::PracticeId,
        subject: &Subject,
        hash: &str,
        current: &str,
        from: &Client,
    ) -> AppResult<Result<(), &'static str>> {
        match self.try_password(practice, subject, from, Some(hash), current).await? {
            crate::session::Tried::Right => {
                self.clear_tries(practice, subject, from).await?;
                Ok(Ok(()))
            }
            tried => Ok(Err(tried.why("wrong current password"))),
        }
    }

    /// A member of staff changes their own password. The current password is a credential try;
    /// a wrong one changes nothing. Every other session of theirs ends (`session`, the one they
    /// are using, carries on). Audited either way.
    pub async fn change_staff_password(
        &self,
        who: &StaffPrincipal,
        session: Option<SessionId>,
        current: &str,
        new: &str,
        again: &str,
        from: &Client,
    ) -> Checked {
        if current.is_empty() {
            return problem("current_password", "Enter your current password");
        }
        if let Some(p) = new_password_problem(new, again) {
            return Ok(Err(p));
        }
        let staff = self
            .store
            .staff_member(who.practice, who.staff)
            .await?
            .filter(|s| s.active)
            .ok_or_else(|| AppError::Unauthenticated("Sign in again".into()))?;
        let subject = Subject::staff(&staff.username);
        let audit = |outcome, detail: String| {
            self.audit_record(who, None, Action::StaffPasswordChange, format!("staff/{}", staff.id), outcome, detail)
        };
        if let Err(why) = self.current_password_ok(who.practice, &subject, &staff.password_hash, current, from).await? {
            self.audit.record(who.practice, audit(Outcome::Denied, format!("{why}; from {}", from.key()))).await?;
            return problem("current_password", WRONG_CURRENT);
        }
        if new == current {
            return problem("new_password", "Choose a new password, not the one you have now");
        }
        let hash = hash_password_off_thread(new).await?;
        let detail = format!("own password changed; other sessions ended; from {}", from.key());
        self.store
            .set_staff_password(who.practice, staff.id, &hash, session, self.now(), &audit(Outcome::Success, detail))
            .await?;
        Ok(Ok(()))
    }

    /// An administrator makes a one-time code for a member of staff who forgot their password.
    /// From now the old password does not work and every session of the member has ended; the
    /// code works once, for [`RESET_CODE_VALIDITY`], at `/sign-in/reset`. Their second factor
    /// stays as it was. Audited; another practice's member is not found.
    pub async fn reset_staff_password(&self, who: &StaffPrincipal, staff: StaffId) -> AppResult<ResetCode> {
        permit(who, Permission::ManageStaff)?;
        if staff == who.staff {
            return Err(AppError::BadRequest(
                "Change your own password with \"Change password\" at the top of the page".into(),
            ));
        }
        let member = self.member_to_manage(who, staff).await?;
        if !member.active {
            return Err(AppError::Conflict("Reactivate the account before you reset its password".into()));
        }
        // The code is seen by the administrator: it must not be all that stands between them and
        // the account. A member without an authenticator set up (new, or just reset) is not reset.
        if !member.sign_in.totp_confirmed {
            return Err(AppError::Conflict(format!(
                "{} has no authenticator set up, so the code alone would sign in as them (an administrator \
                 never holds both factors): they sign in with their first password and set one up, or the \
                 service operator resets the account",
                member.display_name
            )));
        }
        let code = code(RESET_CODE_CHARS);
        let now = self.now();
        let reset = PasswordReset {
            staff: member.id,
            code_hash: sha256(&code),
            made_by: who.staff,
            created_at: now,
            expires_at: now + RESET_CODE_VALIDITY,
            used_at: None,
        };
        let audit = self.audit_record(
            who,
            None,
            Action::StaffPasswordReset,
            format!("staff/{}", member.id),
            Outcome::Success,
            format!(
                "username={} one-time code made, valid until {}; old password and every session ended",
                member.username,
                reset.expires_at.to_rfc3339()
            ),
        );
        self.store.start_password_reset(who.practice, &reset, &unusable_password_hash().await?, &audit).await?;
        let grouped =
            code.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-");
        Ok(ResetCode {
            code: grouped,
            username: member.username,
            name: member.display_name,
            expires_at: reset.expires_at,
        })
    }

    /// A member of staff sets a new password with their administrator's one-time code. The code
    /// is a credential try (claimed first, per username and address); it works once, before it
    /// expires, for that member of that practice only. Every session of theirs ends; they then
    /// sign in with the new password and their usual second factor.
    pub async fn reset_password_with_code(&self, r: &StaffReset, from: &Client) -> Checked {
        if r.username.trim().is_empty() {
            return problem("username", "Enter your username");
        }
        if r.code.trim().is_empty() {
            return problem("code", "Enter the one-time code from your administrator");
        }
        if let Some(p) = new_password_problem(&r.new_password, &r.new_password_again) {
            return Ok(Err(p));
        }
        let wrong = || problem("code", WRONG_RESET_CODE);
        let practice = match self.sign_in_practice(Some(r.ods.as_str()).filter(|s| !s.trim().is_empty())).await {
            Ok(p) => p,
            Err(AppError::BadRequest(m)) => return problem("ods", m),
            Err(AppError::Unauthenticated(_)) => return wrong(),
            Err(e) => return Err(e),
        };
        let subject = Subject::staff(&r.username);
        let claimed = self.claim_try(practice.id, &subject, from).await?;
        let staff = match normalise_username(&r.username) {
            Some(u) => self.store.staff_by_username(practice.id, &u).await?.filter(|s| s.active),
            None => None,
        };
        let Some(staff) = staff else { return wrong() };
        let typed = sha256(&normalise_code(&r.code));
        let now = self.now();
        let verdict = if claimed {
            match self.store.password_reset(practice.id, staff.id).await? {
                None => Err("no one-time code made"),
                Some(x) if x.code_hash != typed => Err("wrong one-time code"),
                Some(x) if x.used_at.is_some() => Err("one-time code used before"),
                Some(x) if !x.is_usable_at(now) => Err("one-time code expired"),
                Some(_) => Ok(()),
            }
        } else {
            Err("try refused unchecked: waiting after wrong tries")
        };
        let actor = Actor { kind: ActorKind::Staff, id: staff.id.to_string(), role: staff.role.as_str().to_owned() };
        let audit = |outcome, detail: String| {
            self.patient_audit(
                actor.clone(),
                None,
                Action::StaffPasswordResetUse,
                format!("staff/{}", staff.id),
                outcome,
                detail,
            )
        };
        if let Err(why) = verdict {
            self.audit.record(practice.id, audit(Outcome::Denied, format!("{why}; from {}", from.key()))).await?;
            return wrong();
        }
        let hash = hash_password_off_thread(&r.new_password).await?;
        let done = audit(Outcome::Success, format!("new password set with a one-time code; from {}", from.key()));
        if !self.store.finish_password_reset(practice.id, staff.id, &typed, &hash, now, &done).await? {
            let why = format!("one-time code used meanwhile; from {}", from.key());
            self.audit.record(practice.id, audit(Outcome::Denied, why)).await?;
            return wrong();
        }
        self.clear_tries(practice.id, &subject, from).await?;
        Ok(Ok(()))
    }

    /// A patient with a local login changes their own password: the current password is a
    /// credential try; every other session of the account ends.
    pub async fn change_patient_password(
        &self,
        me: &PatientPrincipal,
        session: SessionId,
        current: &str,
        new: &str,
        again: &str,
        from: &Client,
    ) -> Checked {
        let login = self
            .store
            .patient_login_of(me.practice, me.account)
            .await?
            .ok_or_else(|| AppError::Conflict("this account signs in through NHS login".into()))?;
        if current.is_empty() {
            return problem("current_password", "Enter your current password");
        }
        if let Some(p) = new_password_problem(new, again) {
            return Ok(Err(p));
        }
        let subject = Subject::patient(&login.username);
        let audit = |outcome, detail: String| {
            self.account_audit(me.account, me.holder, Action::PatientPasswordChange, outcome, detail)
        };
        if let Err(why) = self.current_password_ok(me.practice, &subject, &login.password_hash, current, from).await? {
            self.audit.record(me.practice, audit(Outcome::Denied, format!("{why}; from {}", from.key()))).await?;
            return problem("current_password", WRONG_CURRENT);
        }
        if new == current {
            return problem("new_password", "Choose a new password, not the one you have now");
        }
        let hash = hash_password_off_thread(new).await?;
        let detail = format!("own password changed; other sessions ended; from {}", from.key());
        self.store
            .set_patient_password(
                me.practice,
                me.account,
                &hash,
                Some(session),
                self.now(),
                &audit(Outcome::Success, detail),
            )
            .await?;
        Ok(Ok(()))
    }

    /// Staff print a password letter for a patient who forgot their password, after checking
    /// their identity as for a sign-up letter. It sets a new password for the patient's local
    /// account (the newest, if they have several; the username is kept) and replaces any earlier
    /// letter. A patient without a local account needs a sign-up letter instead.
    pub async fn issue_password_letter(&self, who: &StaffPrincipal, nhs: &str) -> AppResult<LinkageLetter> {
        permit(who, Permission::IssuePatientCredentials)?;
        let patient = self.patient_here(who, nhs).await?;
        let today = self.today();
        if patient.registration_on(today).is_none() || patient.is_deceased_on(today) {
            return Err(AppError::Conflict("online credentials are only issued to patients registered here".into()));
        }
        let mut newest = None;
        for a in self.store.online_accounts(who.practice, patient.id).await? {
            if a.kind != AccountKind::Local {
                continue;
            }
            if let Some(login) = self.store.patient_login_of(who.practice, a.id).await? {
                if newest.as_ref().is_none_or(|(n, _): &(OnlineAccount, _)| a.created_at > n.created_at) {
                    newest = Some((a, login.username));
                }
            }
        }
        let Some((account, username)) = newest else {
            return Err(AppError::Conflict(
                "This patient has no account with a username and password here: print a sign-up letter instead".into(),
            ));
        };
        self.linkage_letter(who, &patient, account.identity, Some((account.id, username))).await
    }

    /// A patient who forgot their password sets a new one with the practice's password letter
    /// and the same identity checks as sign-up (last name, date of birth). The letter works
    /// once; every session of the account ends; the patient then signs in as usual (with their
    /// code, if two-step sign-in is on). Every mismatch gets the same words.
    pub async fn patient_password_reset(&self, r: &PatientReset) -> Checked {
        let mut problems = Vec::new();
        for (field, value, what) in [
            ("ods_code", &r.ods_code, "the practice ODS code"),
            ("account_id", &r.account_id, "the Account ID"),
            ("linkage_key", &r.linkage_key, "the Linkage Key"),
            ("family", &r.family, "your last name"),
        ] {
            if value.trim().is_empty() {
                problems.push(FieldProblem { field, message: format!("Enter {what}") });
            }
        }
        let dob = birth_date(&r.birth_day, &r.birth_month, &r.birth_year);
        if dob.is_none() {
            problems.push(FieldProblem {
                field: "birth_day",
                message: "Enter your date of birth, for example 31 1 1980".into(),
            });
        }
        problems.extend(new_password_problem(&r.new_password, &r.new_password_again).unwrap_or_default());
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        let not_matched = || problem("account_id", NOT_MATCHED);
        let Ok(practice) = self.sign_in_practice(Some(&r.ods_code)).await else { return not_matched() };
        let now = self.now();
        let Some(key) = self.store.linkage_key(practice.id, &normalise_code(&r.account_id)).await? else {
            return not_matched();
        };
        let Some(account) = key.resets else { return not_matched() };
        let Some(patient) = self.store.patient(practice.id, key.holder).await? else { return not_matched() };
        let audit = |outcome, detail: String| {
            self.account_audit(account, patient.id, Action::PatientPasswordReset, outcome, detail)
        };
        let matches = key.is_usable_at(now)
            && sha256(&normalise_code(&r.linkage_key)) == key.key_hash
            && patient.name.family.trim().eq_ignore_ascii_case(r.family.trim())
            && Some(patient.date_of_birth) == dob
            && patient.registration_on(caldicott_core::uk::uk_date(now)).is_some();
        if !matches || self.store.patient_login_of(practice.id, account).await?.is_none() {
            let detail =
                format!("password letter {} refused: details do not match, or it was used or expired", key.account_ref);
            self.audit.record(practice.id, audit(Outcome::Denied, detail)).await?;
            return not_matched();
        }
        let hash = hash_password_off_thread(&r.new_password).await?;
        let done = audit(
            Outcome::Success,
            format!("new password with password letter {}; every session ended", key.account_ref),
        );
        match self.store.reset_patient_password(practice.id, &key.account_ref, account, &hash, now, &done).await {
            Ok(()) => Ok(Ok(())),
            Err(caldicott_store::StoreError::Conflict(_)) => not_matched(),
            Err(e) => Err(e.into()),
        }
    }
}
