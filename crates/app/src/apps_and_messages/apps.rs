//! Third-party patient apps (R21) and the "online services linked" security alert (R23).
//!
//! Administrators register apps and their client credentials. An app links to a patient with
//! the linkage details from the practice's letter (Account ID, ODS code, Linkage Key) plus the
//! patient's last name and date of birth; the link gives it the patient's own online access,
//! never more, through a token of its own. Every new link raises a task; actioning it sends the
//! practice's safety-net message by the patient's preferred channel (email or SMS), or says that
//! staff must contact the patient by hand. Regenerating the linkage key, "reset third-party
//! links", or the patient revoking the app ends a link at once.

use crate::outbox::Draft;
use crate::patient_services::PatientPrincipal;
use crate::permit;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_core::audit::{Action, Actor, ActorKind, Outcome};
use caldicott_core::entry::{EntryBody, Section};
use caldicott_core::ids::*;
use caldicott_core::messages::*;
use caldicott_core::online::{AppLink, LinkVia, PatientApp};
use caldicott_core::patient::Patient;
use caldicott_core::permissions::Permission;
use caldicott_core::practice::Practice;
use caldicott_core::snomed::{SMS_CONSENT, SMS_DISSENT};
use caldicott_core::tasks::{Task, TaskBody, TaskKind, TaskStatus};
use chrono::{Duration, NaiveDate};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const TOKEN_PREFIX: &str = "lnk_";
/// How long an app-link nonce may wait for its ID token.
pub const APP_LINK_NONCE_LIFE: Duration = Duration::minutes(10);
/// An alert task older than this is overdue on the dashboard.
pub const ALERT_OVERDUE: Duration = Duration::hours(24);

pub(crate) fn secret() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

pub(crate) fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// What the linking app sends: the letter's details and the patient's own.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct LinkRequest {
    pub ods_code: String,
    pub account_id: String,
    pub linkage_key: String,
    pub family_name: String,
    pub birth_date: String,
}

/// The result of actioning one alert task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertOutcome {
    /// The safety-net message is queued by this channel; the task is done.
    Sent(Channel),
    /// Nothing could be sent; the task stays open with this reason.
    Manual(String),
}

impl App {
    /// Registers an app; the client secret is shown once and kept only as a hash.
    pub async fn register_app(
        &self,
        who: &StaffPrincipal,
        name: &str,
        supplier: &str,
        nhs_login_client_id: &str,
    ) -> AppResult<(PatientApp, String)> {
        permit(who, Permission::ManageAppsAndIntegrations)?;
        let (name, supplier) = (name.trim(), supplier.trim());
        if name.is_empty() || supplier.is_empty() || name.len() > 100 || supplier.len() > 100 {
            return Err(AppError::BadRequest("Enter the app's name and its supplier".into()));
        }
        let client_secret = secret();
        let app = PatientApp {
            id: AppId::from_uuid(new_id()),
            name: name.to_owned(),
            supplier: supplier.to_owned(),
            client_id: format!("app_{}", Uuid::now_v7().simple()),
            client_secret_hash: sha256(&client_secret),
            nhs_login_client_id: Some(nhs_login_client_id.trim().to_owned()).filter(|c| !c.is_empty()),
            exchange_key: None,
            active: true,
            created_at: self.now(),
        };
        let audit = self.audit_record(
            who,
            None,
            Action::AppRegister,
            format!("app/{}", app.id),
            Outcome::Success,
            app.name.clone(),
        );
        self.store.create_app(who.practice, &app, &audit).await?;
        Ok((app, client_secret))
    }

    /// Turns a registered app off, or on again: while it is off, every link it holds is refused
    /// from the next request (its tokens and new token requests alike), without touching the
    /// links, so turning it on again restores them. For an app that is compromised or has lost
    /// its assurance. Administrators only; audited.
    pub async fn set_app_active(&self, who: &StaffPrincipal, id: &str, active: bool) -> AppResult<()> {
        permit(who, Permission::ManageAppsAndIntegrations)?;
        let unknown = || AppError::NotFound("no such app".into());
        let id = id.parse::<AppId>().map_err(|_| unknown())?;
        let audit = self.audit_record(
            who,
            None,
            Action::AppChange,
            format!("app/{id}"),
            Outcome::Success,
            if active { "turned on again" } else { "turned off" },
        );
        self.store.set_app_active(who.practice, id, active, &audit).await.map_err(|e| match e {
            caldicott_store::StoreError::NotFound(_) => unknown(),
            other => other.into(),
        })
    }

    pub async fn registered_apps(&self, who: &StaffPrincipal) -> AppResult<Vec<PatientApp>> {
        permit(who, Permission::ManageAppsAndIntegrations)?;
        Ok(self.store.apps(who.practice).await?)
    }

    /// An app links to a patient. Returns the link and the app's token for it. Any mismatch gets
    /// one answer, so the endpoint reveals nothing about a record.
    pub async fn link_app(
        &self,
        client_id: &str,
        client_secret: &str,
        r: &LinkRequest,
    ) -> AppResult<(AppLink, String)> {
        let (practice_id, app) = self.app_credentials(client_id, client_secret).await?;
        self.link_app_as(practice_id, &app, r).await
    }

    /// Links an app whose credentials were checked (`app_credentials`) with the letter's details.
    pub async fn link_app_as(
        &self,
        practice_id: PracticeId,
        app: &PatientApp,
        r: &LinkRequest,
    ) -> AppResult<(AppLink, String)> {
        let not_matched =
            || AppError::Forbidden("these linkage details do not match a patient of this practice".into());
        let practice = self.store.practice(practice_id).await?.ok_or_else(not_matched)?;
        if !practice.ods_code.as_str().eq_ignore_ascii_case(r.ods_code.trim()) {
            return Err(not_matched());
        }
        let account_ref: String =
            r.account_id.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect();
        let key_typed: String =
            r.linkage_key.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect();
        let key = self
            .store
            .linkage_key(practice_id, &account_ref)
            .await?
            .filter(|k| k.links_apps())
            .ok_or_else(not_matched)?;
        let patient = self.store.patient(practice_id, key.holder).await?.ok_or_else(not_matched)?;
        let today = self.today();
        let matches = sha256(&key_typed) == key.key_hash
            && patient.name.family.trim().eq_ignore_ascii_case(r.family_name.trim())
            && NaiveDate::parse_from_str(r.birth_date.trim(), "%Y-%m-%d").ok() == Some(patient.date_of_birth)
            && patient.registration_on(today).is_some();
        if !matches {
            return Err(not_matched());
        }
        self.new_app_link(practice_id, app, &patient, LinkVia::LinkageKey, Some(key.account_ref.clone())).await
    }

    /// An app links to a patient with the NHS login P9 identity of its user: the ID token NHS
    /// login issued to the app, and the access token that reads the user's NHS number and date of
    /// birth. The user must be registered at the app's practice.
    pub async fn link_app_nhs_login(
        &self,
        client_id: &str,
        client_secret: &str,
        id_token: &str,
        access_token: &str,
    ) -> AppResult<(AppLink, String)> {
        let (practice_id, app) = self.app_credentials(client_id, client_secret).await?;
        self.link_app_nhs_login_as(practice_id, &app, id_token, access_token).await
    }

    /// A nonce for an app to put in its NHS login request; the ID token it gets back links once,
    /// within [`APP_LINK_NONCE_LIFE`]. Signed by this server, so nothing is stored until it is
    /// used.
    pub fn app_link_nonce(&self, app: &PatientApp) -> (String, chrono::DateTime<chrono::Utc>) {
        let expires = self.now() + APP_LINK_NONCE_LIFE;
        let body = format!("n1.{}.{}.{}", app.id, expires.timestamp(), secret());
        let tag = self.secrets().sign(&body);
        (format!("{body}.{tag}"), expires)
    }

    async fn use_app_link_nonce(&self, practice: PracticeId, app: &PatientApp, nonce: Option<&str>) -> AppResult<()> {
        let refused = |why: &str| {
            AppError::BadRequest(format!(
                "{why}: ask for a nonce first (POST /api/apps/v1/links/nhs-login/nonce), send it in the NHS login \
                 request, and link with the ID token that comes back, once"
            ))
        };
        let nonce = nonce.ok_or_else(|| refused("the ID token carries no nonce"))?;
        let (body, tag) = nonce.rsplit_once('.').ok_or_else(|| refused("the nonce is not one of ours"))?;
        if !self.secrets().verify(body, tag) {
            return Err(refused("the nonce is not one of ours"));
        }
        let mut parts = body.split('.');
        let (Some("n1"), Some(for_app), Some(expires)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(refused("the nonce is not one of ours"));
        };
        if for_app != app.id.to_string() {
            return Err(refused("the nonce was given to another app"));
        }
        let expires = expires
            .parse::<i64>()
            .ok()
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .ok_or_else(|| refused("the nonce is not one of ours"))?;
        if expires <= self.now() {
            return Err(refused("the nonce has expired"));
        }
        let hash: [u8; 32] = Sha256::digest(nonce.as_bytes()).into();
        if !self.store.use_app_link_nonce(practice, app.id, &hash, expires, self.now()).await? {
            return Err(refused("this NHS login sign-in has linked already"));
        }
        Ok(())
    }

    /// Links an app whose credentials were checked (`app_credentials`) with NHS login.
    pub async fn link_app_nhs_login_as(
        &self,
        practice_id: PracticeId,
        app: &PatientApp,
        id_token: &str,
        access_token: &str,
    ) -> AppResult<(AppLink, String)> {
        let audience = app
            .nhs_login_client_id
            .clone()
            .ok_or_else(|| AppError::Forbidden("this app is not registered to link with NHS login".into()))?;
        let provider =
            self.nhs_login().cloned().ok_or_else(|| AppError::Forbidden("NHS login is not set up here".into()))?;
        let (_, level, nhs, dob, nonce) = provider.identify_for_app(id_token, access_token, &audience).await?;
        // The ID token must carry a nonce this server gave this app, unexpired and never used:
        // a token taken from another sign-in, or replayed, links nothing.
        self.use_app_link_nonce(practice_id, app, nonce.as_deref()).await?;
        if level != caldicott_core::access::IdentityLevel::P9 {
            return Err(AppError::Forbidden(
                "linking an app with NHS login needs a fully verified identity (P9)".into(),
            ));
        }
        let not_matched =
            || AppError::Forbidden("this NHS login does not match a patient registered at the practice".into());
        let patient = self.store.patient_by_nhs_number(practice_id, &nhs).await?.ok_or_else(not_matched)?;
        if patient.date_of_birth != dob || patient.registration_on(self.today()).is_none() {
            return Err(not_matched());
        }
        self.new_app_link(practice_id, app, &patient, LinkVia::NhsLogin, None).await
    }

    /// A new link of `app` to `patient`, its alert task and audit event; returns the app's token.
    async fn new_app_link(
        &self,
        practice: PracticeId,
        app: &PatientApp,
        patient: &Patient,
        via: LinkVia,
        linkage_ref: Option<String>,
    ) -> AppResult<(AppLink, String)> {
        let (link, task, audit, token_secret) = self.new_link_parts(app, patient, via, linkage_ref);
        self.store.create_app_link(practice, &link, &task, &audit).await?;
        let token =
            format!("{TOKEN_PREFIX}{}{}{token_secret}", practice.as_uuid().simple(), link.id.as_uuid().simple());
        Ok((link, token))
    }

    /// What a new link of `app` to `patient` is made of: the link, its "online services
    /// linked" task (R23), its audit event, and the secret of the link's own token.
    pub(crate) fn new_link_parts(
        &self,
        app: &PatientApp,
        patient: &Patient,
        via: LinkVia,
        linkage_ref: Option<String>,
    ) -> (AppLink, Task, caldicott_core::audit::AuditRecord, String) {
        let token_secret = secret();
        // The link and its alert share one time, so the alert's message can name its link.
        let now = self.now();
        let link = AppLink {
            id: AppLinkId::from_uuid(new_id()),
            app: app.id,
            patient: patient.id,
            via,
            linkage_ref: linkage_ref.clone(),
            token_hash: sha256(&token_secret),
            linked_at: now,
            revoked_at: None,
            revoked_why: None,
        };
        let how = match via {
            LinkVia::LinkageKey => "the patient's linkage details",
            LinkVia::NhsLogin => "the patient's NHS login",
        };
        let task = Task {
            id: TaskId::from_uuid(new_id()),
            patient: patient.id,
            kind: TaskKind::OnlineServicesLinked,
            status: TaskStatus::Open,
            created_at: now,
            requested_by: format!("{} ({})", app.name, app.supplier),
            body: TaskBody::Message {
                text: format!("{} by {} linked to this record with {how}.", app.name, app.supplier),
            },
            outcome: None,
            closed_at: None,
            closed_by: None,
        };
        let audit = self.patient_audit(
            app_actor(app),
            Some(patient.id),
            Action::AppLink,
            format!("app_link/{}", link.id),
            Outcome::Success,
            format!("app/{} via {}{}", app.id, via.as_str(), linkage_ref.map(|r| format!(" {r}")).unwrap_or_default()),
        );
        (link, task, audit, token_secret)
    }

    /// The live link and app behind an app token.
    pub async fn app_link_of_token(&self, token: &str) -> AppResult<(PracticeId, AppLink, PatientApp)> {
        let refused =
            || AppError::Unauthenticated("the app's access to this record has ended or the token is not right".into());
        let rest = token.trim().strip_prefix(TOKEN_PREFIX).ok_or_else(refused)?;
        if rest.len() < 64 || !rest.is_char_boundary(64) {
            return Err(refused());
        }
        let practice = PracticeId::from_uuid(Uuid::try_parse(&rest[..32]).map_err(|_| refused())?);
        let id = AppLinkId::from_uuid(Uuid::try_parse(&rest[32..64]).map_err(|_| refused())?);
        let link = self.store.app_link(practice, id).await?.ok_or_else(refused)?;
        if link.revoked_at.is_some()
            || !crate::constant_time_eq(&hex::encode(sha256(&rest[64..])), &hex::encode(link.token_hash))
        {
            return Err(refused());
        }
        let app =
            self.store.apps(practice).await?.into_iter().find(|a| a.id == link.app && a.active).ok_or_else(refused)?;
        Ok((practice, link, app))
    }

    /// Whom the holder of an app link acts for online, as the link can use: each person's
    /// Patient id (for the token endpoint's `patient`), name and relationship, for the live proxy
    /// links only.
    pub async fn link_acts_for(&self, token: &str) -> AppResult<Vec<(PatientId, String, String)>> {
        let (practice, link, _) = self.app_link_of_token(token).await?;
        let p = self.store.practice(practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let today = self.today();
        let mut out = Vec::new();
        for l in self.store.proxy_links_for_proxy(practice, link.patient).await? {
            if l.status != caldicott_core::access::ProxyStatus::Active {
                continue;
            }
            let Some(person) = self.store.patient(practice, l.patient).await? else { continue };
            if caldicott_core::visibility::proxy_link_lapse(&l, &person, &p.online, today).is_none() {
                out.push((person.id, format!("{} {}", person.name.given, person.name.family), l.relationship));
            }
        }
        Ok(out)
    }

    /// The apps linked to the signed-in patient's record (the patient's own, never a proxy's).
    pub async fn my_apps(&self, me: &PatientPrincipal) -> AppResult<Vec<(AppLink, PatientApp)>> {
        Ok(self.store.app_links_for_patient(me.practice, me.holder).await?)
    }

    /// The patient cuts an app off.
    pub async fn revoke_my_app(&self, me: &PatientPrincipal, id: AppLinkId) -> AppResult<()> {
        let audit = self.patient_audit(
            me.actor(None),
            Some(me.holder),
            Action::AppUnlink,
            format!("app_link/{id}"),
            Outcome::Success,
            "revoked by the patient",
        );
        match self
            .store
            .revoke_app_links(me.practice, me.holder, Some(id), "revoked by the patient", self.now(), &audit)
            .await?
        {
            0 => Err(AppError::NotFound("no such linked app".into())),
            _ => Ok(()),
        }
    }

    /// A patient's app links, for staff.
    pub async fn patient_apps(&self, who: &StaffPrincipal, nhs: &str) -> AppResult<Vec<(AppLink, PatientApp)>> {
        permit(who, Permission::OpenRecords)?;
        let patient = self.patient_here(who, nhs).await?;
        Ok(self.store.app_links_for_patient(who.practice, patient.id).await?)
    }

    /// The apps linked to a patient whose record the caller has opened (by the patient's id, as
    /// the record page has it).
    pub async fn patient_apps_by_id(
        &self,
        who: &StaffPrincipal,
        patient: PatientId,
    ) -> AppResult<Vec<(AppLink, PatientApp)>> {
        permit(who, Permission::OpenRecords)?;
        Ok(self.store.app_links_for_patient(who.practice, patient).await?)
    }

    /// "Reset third-party links": every app linked to the patient loses access at once.
    pub async fn reset_app_links(&self, who: &StaffPrincipal, nhs: &str) -> AppResult<u64> {
        permit(who, Permission::OpenRecords)?;
        let patient = self.patient_here(who, nhs).await?;
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::AppUnlink,
            format!("patient/{}", patient.id),
            Outcome::Success,
            "reset third-party links",
        );
        Ok(self
            .store
            .revoke_app_links(
                who.practice,
                patient.id,
                None,
                "third-party links reset by the practice",
                self.now(),
                &audit,
            )
            .await?)
    }

    /// Whether the patient's most recent SMS consent code is a dissent (R40).
    async fn sms_dissent(&self, practice: PracticeId, patient: PatientId) -> AppResult<bool> {
        let mut latest: Option<(chrono::DateTime<chrono::Utc>, bool)> = None;
        // Every coded entry, however long the record: an old dissent is still the latest if
        // nothing came after it.
        for e in self.entries_of(practice, patient, Some(Section::Codes)).await? {
            let Some(code) = e.code.as_ref().map(|c| c.concept.as_str()) else { continue };
            let dissent = match code {
                SMS_DISSENT => true,
                SMS_CONSENT => false,
                _ => continue,
            };
            if !matches!(e.body, EntryBody::Coded { .. }) {
                continue;
            }
            if latest.is_none_or(|(at, _)| e.entered_at > at) {
                latest = Some((e.entered_at, dissent));
            }
        }
        Ok(latest.is_some_and(|(_, d)| d))
    }

    /// The practice's safety-net preset (its own wording if it saved one, else the default).
    pub async fn safety_net_preset(&self, practice: PracticeId) -> AppResult<Preset> {
        Ok(self
            .store
            .presets(practice)
            .await?
            .into_iter()
            .find(|(_, p)| p.name == SAFETY_NET_NAME)
            .map(|(_, p)| p)
            .unwrap_or_else(|| Preset { name: SAFETY_NET_NAME.into(), body: SAFETY_NET_BODY.into() }))
    }

    /// The values of a preset's placeholders for a patient, and the app link it is about (its
    /// app's name and when it linked), if any.
    pub fn preset_values(
        practice: &Practice,
        patient: &Patient,
        link: Option<&(String, chrono::DateTime<chrono::Utc>)>,
    ) -> Vec<(&'static str, String)> {
        let (app_name, linked_at) = match link {
            Some((name, at)) => {
                (name.clone(), caldicott_core::appointments::uk_time(*at).format("%-d %B %Y at %H:%M").to_string())
            }
            None => (NO_APP_NAME.to_owned(), NO_LINKED_AT.to_owned()),
        };
        vec![
            ("initials", initials(&patient.name.given, &patient.name.family)),
            ("patient_given_name", patient.name.given.clone()),
            ("organisation_name", practice.name.clone()),
            ("organisation_main_telephone", practice.telephone.clone()),
            ("app_name", app_name),
            ("linked_at", linked_at),
        ]
    }

    /// The app link a message is about: the patient's latest link made at or before `until`
    /// (an alert's task is made with its link), or their latest link at all. Its app's name and
    /// when it linked.
    async fn link_named(
        &self,
        practice: PracticeId,
        patient: PatientId,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> AppResult<Option<(String, chrono::DateTime<chrono::Utc>)>> {
        Ok(self
            .store
            .app_links_for_patient(practice, patient)
            .await?
            .into_iter()
            .filter(|(l, _)| until.is_none_or(|u| l.linked_at <= u))
            .max_by_key(|(l, _)| l.linked_at)
            .map(|(l, a)| (a.name, l.linked_at)))
    }

    /// An "online services linked" task not yet done, and its patient, for the caller to action.
    async fn open_alert(&self, who: &StaffPrincipal, id: TaskId) -> AppResult<(Task, Patient)> {
        permit(who, Permission::OpenRecords)?;
        let (task, patient) = self.open_task(who, id).await?;
        if task.kind != TaskKind::OnlineServicesLinked {
            return Err(AppError::BadRequest("this is not an online services linked task".into()));
        }
        if task.status == TaskStatus::Done {
            return Err(AppError::Conflict("this task is already done".into()));
        }
        Ok((task, patient))
    }

    /// Actions an "online services linked" task (R23): the safety-net message goes by the
    /// patient's preferred channel, or, when staff choose `anyway`, by email (else SMS) if an
    /// address or number is on record. Otherwise the task stays open with the reason.
    pub async fn action_alert(&self, who: &StaffPrincipal, id: TaskId, anyway: bool) -> AppResult<AlertOutcome> {
        let (mut task, patient) = self.open_alert(who, id).await?;
        let practice =
            self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("your practice".into()))?;
        let reach = Reach {
            preferred: patient.preferred_contact,
            email: patient.contact.email.as_deref(),
            mobile: patient.contact.mobile.as_deref(),
            sms_dissent: self.sms_dissent(who.practice, patient.id).await?,
        };
        let channel = match (automatic_channel(&reach), anyway) {
            (Ok(c), _) => c,
            (Err(_), true) => match anyway_channel(&reach) {
                Some(c) => c,
                None if reach.mobile.is_some() && reach.sms_dissent => {
                    return Ok(AlertOutcome::Manual(SMS_DISSENT_NO_EMAIL.into()))
                }
                None => {
                    return Ok(AlertOutcome::Manual(
                        "No email address or mobile number on record: contact the patient manually".into(),
                    ))
                }
            },
            (Err(why), false) => return Ok(AlertOutcome::Manual(why.into())),
        };
        let preset = self.safety_net_preset(who.practice).await?;
        let link = self.link_named(who.practice, patient.id, Some(task.created_at)).await?;
        let body = preset.render(&Self::preset_values(&practice, &patient, link.as_ref()));
        let recipient = match channel {
            Channel::Email => reach.email.unwrap_or_default().to_owned(),
            _ => reach.mobile.unwrap_or_default().to_owned(),
        };
        let message = Draft {
            patient: patient.id,
            purpose: "safety_net",
            channel,
            recipient,
            subject: format!("A new online service was linked to your GP record at {}", practice.name),
            body,
        }
        .into_message(self.now());
        let message = OutboundMessage { task: Some(id), ..message };
        let how = match channel {
            Channel::Email => "email",
            Channel::Sms => "text message",
            Channel::Letter => "letter",
        };
        let chosen = if automatic_channel(&reach).is_ok() { "preferred channel" } else { "sent anyway: staff choice" };
        task.close(&format!("Safety-net {how} sent ({chosen})"), &who.name, self.now())
            .map_err(|e| AppError::Conflict(e.to_string()))?;
        let audit = self.task_audit(
            who,
            patient.id,
            id,
            format!("safety net by {} ({chosen}); message/{}", channel.as_str(), message.id),
        );
        self.store.update_task(who.practice, (&task.body, &task), &[], Some(&message), None, &audit).await?;
        Ok(AlertOutcome::Sent(channel))
    }

    /// Actions an alert by letter, where there is no email address or mobile number: with no
    /// letter provider, the practice gets a "letter to print and post" task with the letter.
    pub async fn letter_alert(&self, who: &StaffPrincipal, id: TaskId) -> AppResult<AlertOutcome> {
        let (mut task, patient) = self.open_alert(who, id).await?;
        let address = &patient.contact.address;
        if address.postcode.trim().is_empty() || address.lines.is_empty() {
            return Ok(AlertOutcome::Manual("No postal address on record: contact the patient manually".into()));
        }
        let practice =
            self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("your practice".into()))?;
        let preset = self.safety_net_preset(who.practice).await?;
        let link = self.link_named(who.practice, patient.id, Some(task.created_at)).await?;
        let body = preset.render(&Self::preset_values(&practice, &patient, link.as_ref()));
        let subject = format!("A new online service was linked to your GP record at {}", practice.name);
        let (message, follow_up) = self.letter(who, &practice, &patient, "safety_net", subject, body);
        let message = OutboundMessage { task: Some(id), ..message };
        let outcome = if follow_up.is_some() {
            "Safety-net letter to print and post"
        } else {
            "Safety-net letter sent through Notify"
        };
        task.close(outcome, &who.name, self.now()).map_err(|e| AppError::Conflict(e.to_string()))?;
        let audit = self.task_audit(who, patient.id, id, format!("safety net by letter; message/{}", message.id));
        self.store
            .update_task(who.practice, (&task.body, &task), &[], Some(&message), follow_up.as_ref(), &audit)
            .await?;
        Ok(AlertOutcome::Sent(Channel::Letter))
    }

    /// A letter to the patient's address: the outbox message and, when the practice posts its
    /// own letters, the task that holds the printable letter (the message waits until posted).
    fn letter(
        &self,
        who: &StaffPrincipal,
        practice: &Practice,
        patient: &Patient,
        purpose: &'static str,
        subject: String,
        body: String,
    ) -> (OutboundMessage, Option<Task>) {
        let address = &patient.contact.address;
        let name = format!("{} {}", patient.name.given, patient.name.family);
        let recipient = std::iter::once(name.clone())
            .chain(address.lines.iter().cloned())
            .chain(std::iter::once(address.postcode.clone()))
            .collect::<Vec<_>>()
            .join("\n");
        let mut message = Draft {
            patient: patient.id,
            purpose,
            channel: Channel::Letter,
            recipient: recipient.clone(),
            subject,
            body: body.clone(),
        }
        .into_message(self.now());
        if self.letters_by_notify {
            return (message, None);
        }
        let today = caldicott_core::appointments::uk_time(self.now()).format("%-d %B %Y").to_string();
        let header = std::iter::once(practice.name.clone())
            .chain(practice.address.lines.iter().cloned())
            .chain([practice.address.postcode.clone(), format!("Telephone {}", practice.telephone)])
            .collect::<Vec<_>>()
            .join("\n");
        let letter = format!("{header}\n\n{today}\n\n{recipient}\n\nDear {name},\n\n{body}\n\n{}", practice.name);
        message.status = MessageStatus::Printing;
        let task = Task {
            id: TaskId::from_uuid(new_id()),
            patient: patient.id,
            kind: TaskKind::PostLetter,
            status: TaskStatus::Open,
            created_at: self.now(),
            requested_by: who.name.clone(),
            body: TaskBody::Letter { message: message.id, text: letter },
            outcome: None,
            closed_at: None,
            closed_by: None,
        };
        (message, Some(task))
    }

    /// The practice printed and posted a letter.
    pub async fn letter_posted(&self, who: &StaffPrincipal, id: TaskId) -> AppResult<()> {
        permit(who, Permission::OpenRecords)?;
        let (mut task, patient) = self.open_task(who, id).await?;
        let TaskBody::Letter { message, .. } = task.body.clone() else {
            return Err(AppError::BadRequest("this task is not a letter to post".into()));
        };
        task.close("Printed and posted", &who.name, self.now()).map_err(|e| AppError::Conflict(e.to_string()))?;
        let audit = self.task_audit(who, patient.id, id, format!("letter posted; message/{message}"));
        Ok(self.store.letter_posted(who.practice, &task, message, &audit).await?)
    }

    /// Open alert tasks older than a day, for the dashboard.
    pub async fn overdue_alerts(&self, who: &StaffPrincipal) -> AppResult<usize> {
        permit(who, Permission::OpenRecords)?;
        let before = self.now() - ALERT_OVERDUE;
        let n = self.store.count_open_tasks(who.practice, TaskKind::OnlineServicesLinked, before).await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// A preset's preview: the message as one patient would get it, with its SMS fragments and cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetPreview {
    pub text: String,
    pub fragments: u32,
    pub gsm: bool,
    pub cost_hundredths: i64,
}

impl App {
    /// The practice's presets: its own, and the default safety net if it has not saved its own.
    pub async fn message_presets(&self, who: &StaffPrincipal) -> AppResult<Vec<Preset>> {
        permit(who, Permission::OpenRecords)?;
        let mut presets: Vec<Preset> = self.store.presets(who.practice).await?.into_iter().map(|(_, p)| p).collect();
        if !presets.iter().any(|p| p.name == SAFETY_NET_NAME) {
            presets.insert(0, Preset { name: SAFETY_NET_NAME.into(), body: SAFETY_NET_BODY.into() });
        }
        Ok(presets)
    }

    /// Saves a preset (practice managers), refusing unknown placeholders.
    pub async fn save_preset(
        &self,
        who: &StaffPrincipal,
        name: &str,
        body: &str,
    ) -> AppResult<Result<Preset, PresetError>> {
        permit(who, Permission::EditMessagePresets)?;
        let preset = match Preset::new(name, body) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let audit =
            self.audit_record(who, None, Action::PresetSave, format!("preset/{}", preset.name), Outcome::Success, "");
        self.store.save_preset(who.practice, &preset, &who.name, self.now(), &audit).await?;
        Ok(Ok(preset))
    }

    /// Previews a preset's wording with a real patient of the practice.
    pub async fn preview_preset(
        &self,
        who: &StaffPrincipal,
        body: &str,
        nhs: &str,
    ) -> AppResult<Result<PresetPreview, PresetError>> {
        permit(who, Permission::OpenRecords)?;
        let preset = match Preset::new("preview", body) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let patient = self.patient_here(who, nhs).await?;
        let practice =
            self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("your practice".into()))?;
        let link = self.link_named(who.practice, patient.id, None).await?;
        let text = preset.render(&Self::preset_values(&practice, &patient, link.as_ref()));
        let (fragments, gsm) = sms_fragments(&text);
        Ok(Ok(PresetPreview {
            text,
            fragments,
            gsm,
            cost_hundredths: i64::from(fragments) * crate::outbox::sms_fragment_price(),
        }))
    }
}

/// A patient's contact details and preferred method, as staff see them (R38, R39).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactQuality {
    pub patients_16_plus: usize,
    pub with_preference: usize,
    /// (patient, what is wrong), for the data-quality list.
    pub problems: Vec<(caldicott_store::PatientListing, &'static str)>,
}

impl App {
    /// Records how a patient wants to be contacted (R38), with the email address and mobile
    /// number the preference needs (R39 checks them).
    pub async fn set_contact(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        preferred: &str,
        email: &str,
        mobile: &str,
    ) -> AppResult<Result<(), Vec<crate::settings::FieldProblem>>> {
        use crate::settings::FieldProblem;
        use caldicott_core::patient::PreferredContactMethod as P;
        permit(who, Permission::OpenRecords)?;
        let patient = self.patient_here(who, nhs).await?;
        let mut problems = Vec::new();
        let method = P::ALL.into_iter().find(|m| m.code().map_or("unknown".to_owned(), |c| c.to_string()) == preferred);
        if method.is_none() {
            problems.push(FieldProblem {
                field: "preferred",
                message: "Choose how the patient prefers to be contacted".into(),
            });
        }
        let email = Some(email.trim()).filter(|e| !e.is_empty());
        if email.is_some_and(|e| !e.contains('@') || e.len() > 254) {
            problems
                .push(FieldProblem { field: "email", message: "Enter an email address like name@example.com".into() });
        }
        let mobile = Some(mobile.trim()).filter(|m| !m.is_empty());
        if mobile.is_some_and(|m| m.chars().filter(char::is_ascii_digit).count() < 10) {
            problems.push(FieldProblem { field: "mobile", message: "Enter a mobile number like 07700 900123".into() });
        }
        match (method, email, mobile) {
            (Some(P::Email), None, _) => problems
                .push(FieldProblem { field: "email", message: "Email is preferred: enter the email address".into() }),
            (Some(P::Sms), _, None) => problems.push(FieldProblem {
                field: "mobile",
                message: "Text messages are preferred: enter the mobile number".into(),
            }),
            _ => {}
        }
        let (Some(method), true) = (method, problems.is_empty()) else { return Ok(Err(problems)) };
        let old = patient.preferred_contact.code().map_or("unknown".into(), |c| c.to_string());
        let new = method.code().map_or("unknown".into(), |c| c.to_string());
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::PatientUpdate,
            format!("patient/{}", patient.id),
            Outcome::Success,
            format!("preferred contact: old {old} new {new}"),
        );
        self.store.set_contact(who.practice, patient.id, method, email, mobile, &audit).await?;
        Ok(Ok(()))
    }

    /// The data-quality list (SMS preferred without a mobile, email without an address, no
    /// preference) and the coverage figure for patients aged 16 and over (R39).
    pub async fn contact_quality(&self, who: &StaffPrincipal) -> AppResult<ContactQuality> {
        use caldicott_core::patient::PreferredContactMethod as P;
        permit(who, Permission::OpenRecords)?;
        let today = self.today();
        let all = self.store.search_patients(who.practice, &caldicott_store::PatientSearch::default(), 100_000).await?;
        let mut q = ContactQuality { patients_16_plus: 0, with_preference: 0, problems: Vec::new() };
        for listing in all {
            if listing.date_of_death.is_some() || caldicott_core::patient::age_on(listing.date_of_birth, today) < 16 {
                continue;
            }
            let Some(p) = self.store.patient(who.practice, listing.id).await? else { continue };
            if p.registration_on(today).is_none() {
                continue;
            }
            q.patients_16_plus += 1;
            let problem = match p.preferred_contact {
                P::Unknown => Some("No preferred contact method recorded"),
                P::Sms if p.contact.mobile.is_none() => Some("Text messages preferred, but no mobile number"),
                P::Email if p.contact.email.is_none() => Some("Email preferred, but no email address"),
                _ => None,
            };
            if p.preferred_contact != P::Unknown {
                q.with_preference += 1;
            }
            if let Some(why) = problem {
                q.problems.push((listing, why));
            }
        }
        self.audit_look(
            who,
            None,
            Action::ContactQualityView,
            "contact-preferences",
            format!("patients={}", q.problems.len()),
        )
        .await?;
        Ok(q)
    }
}

/// A message composed from a preset for one patient, before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub patient: PatientId,
    pub preset: String,
    pub text: String,
    /// How it would go; `None` when there is no way to reach the patient.
    pub channel: Option<Channel>,
    pub to: String,
    pub fragments: u32,
    pub cost_hundredths: i64,
}

impl App {
    /// Composes a preset for a patient: the text, the channel (the preference; else email, then
    /// text message, then letter) and, for a text message, its fragments and cost (R42).
    pub async fn compose(&self, who: &StaffPrincipal, nhs: &str, preset: &str) -> AppResult<Composed> {
        permit(who, Permission::OpenRecords)?;
        let patient = self.patient_here(who, nhs).await?;
        let practice =
            self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("your practice".into()))?;
        let chosen = self
            .message_presets(who)
            .await?
            .into_iter()
            .find(|p| p.name == preset)
            .ok_or_else(|| AppError::BadRequest("Choose a message preset".into()))?;
        let link = self.link_named(who.practice, patient.id, None).await?;
        let text = chosen.render(&Self::preset_values(&practice, &patient, link.as_ref()));
        let reach = Reach {
            preferred: patient.preferred_contact,
            email: patient.contact.email.as_deref(),
            mobile: patient.contact.mobile.as_deref(),
            sms_dissent: self.sms_dissent(who.practice, patient.id).await?,
        };
        let has_address =
            !patient.contact.address.postcode.trim().is_empty() && !patient.contact.address.lines.is_empty();
        let channel = match patient.preferred_contact {
            caldicott_core::patient::PreferredContactMethod::Letter if has_address => Some(Channel::Letter),
            _ => automatic_channel(&reach)
                .ok()
                .or_else(|| anyway_channel(&reach))
                .or(has_address.then_some(Channel::Letter)),
        };
        let to = match channel {
            Some(Channel::Email) => reach.email.unwrap_or_default().to_owned(),
            Some(Channel::Sms) => reach.mobile.unwrap_or_default().to_owned(),
            Some(Channel::Letter) => {
                format!("{}, {}", patient.contact.address.lines.join(", "), patient.contact.address.postcode)
            }
            None => String::new(),
        };
        let (fragments, _) = if channel == Some(Channel::Sms) { sms_fragments(&text) } else { (0, true) };
        Ok(Composed {
            patient: patient.id,
            preset: chosen.name,
            text,
            channel,
            to,
            fragments,
            cost_hundredths: i64::from(fragments) * crate::outbox::sms_fragment_price(),
        })
    }

    /// The message form for a patient: the composed text and the address it would go to are
    /// shown, so the look is audited.
    pub async fn view_compose(&self, who: &StaffPrincipal, nhs: &str, preset: &str) -> AppResult<Composed> {
        let composed = self.compose(who, nhs, preset).await?;
        self.audit_look(
            who,
            Some(composed.patient),
            Action::RecordFormView,
            format!("patient/{}", composed.patient),
            "form=message",
        )
        .await?;
        Ok(composed)
    }

    /// Sends a preset to a patient by the channel `compose` chose: into the outbox, with the
    /// letter's print-and-post task when the practice posts its own letters.
    ///
    /// `send_key` is the key the form was given when it was shown: the same form submitted
    /// again (a double click, a resent request, however close together) sends nothing more and
    /// is answered as sent.
    pub async fn send_preset(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        preset: &str,
        send_key: &str,
    ) -> AppResult<Composed> {
        let form = Uuid::try_parse(send_key.trim())
            .map_err(|_| AppError::BadRequest("This form has expired: open Send a message again".into()))?;
        let composed = self.compose(who, nhs, preset).await?;
        let Some(channel) = composed.channel else {
            return Err(AppError::Conflict(
                "No email address, mobile number or postal address on record: contact the patient another way".into(),
            ));
        };
        let patient = self.patient_here(who, nhs).await?;
        let practice =
            self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("your practice".into()))?;
        let subject = format!("A message from {}", practice.name);
        let (message, task) = match channel {
            Channel::Letter => self.letter(who, &practice, &patient, "manual", subject, composed.text.clone()),
            _ => (
                Draft {
                    patient: patient.id,
                    purpose: "manual",
                    channel,
                    recipient: match channel {
                        Channel::Email => patient.contact.email.clone().unwrap_or_default(),
                        _ => patient.contact.mobile.clone().unwrap_or_default(),
                    },
                    subject,
                    body: composed.text.clone(),
                }
                .into_message(self.now()),
                None,
            ),
        };
        // One message per form, patient and preset; the key is a hash, and reaches no provider.
        let idempotency_key = hex::encode(sha256(&format!("send-a-message|{form}|{}|{}", patient.id, composed.preset)));
        let message = OutboundMessage { idempotency_key, ..message };
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::MessageQueue,
            format!("message/{}", message.id),
            Outcome::Success,
            format!("preset {:?} by {}", composed.preset, channel.as_str()),
        );
        // `false`: this form was sent already, and nothing more is written.
        self.store.enqueue_message_with_task(who.practice, &message, task.as_ref(), &audit).await?;
        Ok(composed)
    }
}

/// A registered app as the audit names it.
pub(crate) fn app_actor(app: &PatientApp) -> Actor {
    Actor { kind: ActorKind::App, id: app.id.to_string(), role: "app".into() }
}
