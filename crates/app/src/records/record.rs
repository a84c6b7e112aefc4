//! Reading a record: the staff view (every entry, each marked with whether the patient can see
//! it online and, if not, why) and the online view as a given viewer (exactly what that patient
//! or proxy sees, nothing more). Both are audited before they are returned.

use crate::permit;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_core::access::{IdentityLevel, ProxyLink, Viewer};
use caldicott_core::audit::{Action, AuditRecord, Outcome};
use caldicott_core::entry::{Entry, Section};
use caldicott_core::ids::*;
use caldicott_core::patient::Patient;
use caldicott_core::permissions::Permission;
use caldicott_core::practice::Practice;
use caldicott_core::snomed::{enhanced_review, EnhancedReview};
use caldicott_core::visibility::{AccessPolicy, AutomaticBlock, Decision, LevelReach, RecordFacts, Shown, Withheld};
use caldicott_core::NhsNumber;
use caldicott_store::{EntryCursor, EntryQuery};
use chrono::{DateTime, NaiveDate};
use serde::Serialize;
use uuid::Uuid;

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

/// Which page of which section.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub section: Option<Section>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

impl PageRequest {
    pub(crate) fn limit(&self) -> AppResult<u32> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(n) => Err(AppError::BadRequest(format!("limit must be 1 to {MAX_PAGE}, not {n}"))),
        }
    }
}

/// Who the online view is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewAs {
    Patient,
    Proxy(ProxyLinkId),
}

/// An opaque page cursor: the sort key of the last entry on the previous page. Only ever made
/// from an entry the caller was shown.
pub fn encode_cursor(e: &Entry) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "v1|{}|{}|{}",
        e.event_date,
        e.entered_at.timestamp_micros(),
        e.id.as_uuid().simple()
    ))
}

pub fn decode_cursor(s: &str) -> AppResult<EntryCursor> {
    let bad = || AppError::BadRequest("the page cursor is not valid; start again from the first page".into());
    let raw = URL_SAFE_NO_PAD.decode(s.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.split('|');
    let (Some("v1"), Some(date), Some(micros), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    Ok(EntryCursor {
        event_date: date.parse::<NaiveDate>().map_err(|_| bad())?,
        entered_at: micros.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(bad)?,
        id: EntryId::from_uuid(Uuid::try_parse(id).map_err(|_| bad())?),
    })
}

/// Parses an NHS number from a URL or form, with the core's clear message when it is wrong.
pub fn parse_nhs_number(s: &str) -> AppResult<NhsNumber> {
    NhsNumber::parse(s).map_err(|e| AppError::BadRequest(e.to_string()))
}

/// What a viewer's access amounts to, for staff screens and API callers.
#[derive(Debug, Clone, Serialize)]
pub struct AccessSummary {
    /// Set when the viewer sees no entries at all, with the rule and the reason.
    pub no_record_access: Option<Reason>,
    pub automatic: Result<LevelReach, AutomaticBlockReason>,
    pub levels: Vec<LevelReach>,
    /// The patient's own level and the day it was set, when it replaces automatic access (R13).
    pub own_level: Option<(caldicott_core::access::AccessLevel, NaiveDate)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AutomaticBlockReason {
    pub rule: &'static str,
    pub reason: String,
    pub block: AutomaticBlock,
}

/// A withheld entry's rule and a sentence for staff.
#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    pub rule: &'static str,
    pub reason: String,
    pub code: Withheld,
}

impl From<Withheld> for Reason {
    fn from(w: Withheld) -> Self {
        Self { rule: w.rule(), reason: w.explain(), code: w }
    }
}

fn summarise(policy: &AccessPolicy) -> AccessSummary {
    AccessSummary {
        no_record_access: policy.denied().map(Reason::from),
        automatic: policy.automatic().map_err(|b| AutomaticBlockReason {
            rule: b.rule(),
            reason: b.explain(),
            block: b,
        }),
        levels: policy.reach(),
        own_level: policy.own_level(),
    }
}

/// An entry as staff see it, with the viewer's online decision.
#[derive(Debug, Clone, Serialize)]
pub struct StaffEntry {
    #[serde(flatten)]
    pub entry: Entry,
    pub online: OnlineStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct OnlineStatus {
    pub visible: bool,
    pub withheld: Option<Reason>,
}

impl From<Decision> for OnlineStatus {
    fn from(d: Decision) -> Self {
        match d {
            Decision::Shown => Self { visible: true, withheld: None },
            Decision::Withheld(w) => Self { visible: false, withheld: Some(w.into()) },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StaffRecordPage {
    pub patient: Patient,
    pub enhanced_review: EnhancedReview,
    /// Whose online view the entries are marked for.
    pub viewer: ViewerSummary,
    /// That viewer's access.
    pub online_access: AccessSummary,
    /// The patient's own access settings, as staff set them.
    pub access_settings: caldicott_core::access::OnlineAccessSettings,
    pub proxies: Vec<ProxyLink>,
    /// Each proxy's name ("Given Family"), in the order of `proxies`: staff choose whom to look
    /// as by name, since a patient may have two parents.
    #[serde(skip)]
    pub proxy_names: Vec<String>,
    /// The patient's dissent from sharing their record through GP Connect, when one stands.
    pub gp_connect_dissent: Option<caldicott_core::gpconnect::SharingDissent>,
    pub entries: Vec<StaffEntry>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OnlineViewPage {
    pub patient: PatientId,
    pub viewer: ViewerSummary,
    pub access: AccessSummary,
    /// Exactly the entries the viewer sees on this page, newest first.
    pub entries: Vec<Shown<Entry>>,
    pub next_cursor: Option<String>,
    /// What a staff page around the view shows (the patient banner); not part of the view.
    #[serde(skip)]
    pub context: PreviewContext,
}

/// The patient and viewer, for the staff page that shows an online view.
#[derive(Debug, Clone, Default)]
pub struct PreviewContext {
    pub patient: Option<Patient>,
    pub enhanced_review_active: bool,
    /// The proxy's relationship to the patient, when the viewer is a proxy.
    pub proxy_relationship: Option<String>,
    /// The proxy's name ("Given Family"), when the viewer is a proxy: a patient may have two
    /// parents, and staff must know which one they are looking as.
    pub proxy_name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ViewerSummary {
    pub kind: &'static str,
    pub proxy_link: Option<ProxyLinkId>,
    pub identity_level: Option<IdentityLevel>,
}

#[derive(Clone)]
pub(crate) struct Loaded {
    pub(crate) practice: Practice,
    pub(crate) patient: Patient,
    pub(crate) access: caldicott_core::access::OnlineAccessSettings,
    pub(crate) enhanced_review: EnhancedReview,
    /// The best identity level among the patient's own online accounts.
    pub(crate) identity: Option<IdentityLevel>,
    /// The UK date a record was last transferred in for the patient (R7).
    pub(crate) transferred_in: Option<NaiveDate>,
}

impl App {
    /// The patient with this NHS number registered (now or before) at the caller's practice.
    pub(crate) async fn patient_here(&self, who: &StaffPrincipal, nhs: &str) -> AppResult<Patient> {
        let nhs = parse_nhs_number(nhs)?;
        self.store
            .patient_by_nhs_number(who.practice, &nhs)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no patient with NHS number {nhs} is registered here")))
    }

    /// An audit record of something the caller did, timed now.
    pub(crate) fn audit_record(
        &self,
        who: &StaffPrincipal,
        patient: Option<PatientId>,
        action: Action,
        entity: impl Into<String>,
        outcome: Outcome,
        detail: impl Into<String>,
    ) -> AuditRecord {
        AuditRecord::new(
            AuditEventId::from_uuid(new_id()),
            self.now(),
            who.actor(),
            patient,
            action,
            entity,
            outcome,
            detail,
        )
    }

    /// Records that the caller is being shown patient data (a page or an answer), and waits
    /// until the event is durable: call it after the read and before the answer is returned, so
    /// that nothing is shown unaudited (and nothing is shown if the audit cannot be written).
    pub(crate) async fn audit_look(
        &self,
        who: &StaffPrincipal,
        patient: Option<PatientId>,
        action: Action,
        entity: impl Into<String>,
        detail: impl Into<String>,
    ) -> AppResult<()> {
        let rec = self.audit_record(who, patient, action, entity, Outcome::Success, detail);
        self.audit.record(who.practice, rec).await
    }

    /// The engine's decisions for the patient themselves, for a staff page that marks each entry
    /// shown or not shown online.
    pub(crate) async fn patients_own_policy(&self, l: &Loaded) -> AppResult<AccessPolicy> {
        let (link, identity) = self.resolve_viewer(l, ViewAs::Patient).await?;
        Ok(self.policy_for(l, link.as_ref(), identity))
    }

    /// Finds a patient of the caller's practice; a failed or refused look-up is audited too.
    pub(crate) async fn load(&self, who: &StaffPrincipal, nhs: &str, action: Action) -> AppResult<Loaded> {
        let nhs = parse_nhs_number(nhs)?;
        if let Err(e) = permit(who, Permission::OpenRecords) {
            let rec =
                self.audit_record(who, None, action, format!("nhs_number/{}", nhs.as_str()), Outcome::Denied, "role");
            self.audit.record(who.practice, rec).await?;
            return Err(e);
        }
        let practice = self
            .store
            .practice(who.practice)
            .await?
            .ok_or_else(|| AppError::Unauthenticated("the practice of this token no longer exists".into()))?;
        let Some(patient) = self.store.patient_by_nhs_number(practice.id, &nhs).await? else {
            let rec = self.audit_record(
                who,
                None,
                action,
                format!("nhs_number/{}", nhs.as_str()),
                Outcome::NotFound,
                String::new(),
            );
            self.audit.record(who.practice, rec).await?;
            return Err(AppError::NotFound(format!(
                "no patient with NHS number {nhs} is registered at {}",
                practice.name
            )));
        };
        self.facts_for(practice, patient).await
    }

    /// The access facts of a patient already found.
    pub(crate) async fn facts_for(&self, practice: Practice, patient: Patient) -> AppResult<Loaded> {
        let facts = self.store.access_facts(practice.id, patient.id).await?;
        let enhanced_review = enhanced_review(facts.enhanced_review_codes.iter().map(|(c, t)| (c.as_str(), *t)));
        let identity = facts.account_identities.iter().copied().max();
        let transferred_in = facts.transferred_in.map(caldicott_core::uk::uk_date);
        Ok(Loaded { practice, patient, access: facts.settings, enhanced_review, identity, transferred_in })
    }

    async fn identity_of(&self, practice: PracticeId, holder: PatientId) -> AppResult<Option<IdentityLevel>> {
        Ok(self.store.online_accounts(practice, holder).await?.iter().map(|a| a.identity).max())
    }

    /// The proxy link named by `as_viewer` (which must act for this patient) and the viewer's
    /// best identity level.
    pub(crate) async fn resolve_viewer(
        &self,
        l: &Loaded,
        as_viewer: ViewAs,
    ) -> AppResult<(Option<ProxyLink>, Option<IdentityLevel>)> {
        match as_viewer {
            ViewAs::Patient => Ok((None, l.identity)),
            ViewAs::Proxy(id) => {
                let link = self
                    .store
                    .proxy_link(l.practice.id, id)
                    .await?
                    .filter(|link| link.patient == l.patient.id)
                    .ok_or_else(|| AppError::NotFound(format!("no proxy link {id} for this patient")))?;
                let identity = self.identity_of(l.practice.id, link.proxy).await?;
                Ok((Some(link), identity))
            }
        }
    }

    /// What the viewer (the patient, or the proxy of `link`) may see of the loaded record now.
    pub(crate) fn policy_for(
        &self,
        l: &Loaded,
        link: Option<&ProxyLink>,
        identity: Option<IdentityLevel>,
    ) -> AccessPolicy {
        let viewer = match link {
            None => Viewer::Patient { identity },
            Some(link) => Viewer::Proxy { link, identity },
        };
        let facts = RecordFacts {
            practice: &l.practice.online,
            patient: &l.patient,
            access: &l.access,
            enhanced_review: l.enhanced_review,
            transferred_in: l.transferred_in,
        };
        AccessPolicy::new(viewer, facts, self.now())
    }

    /// The whole record as staff see it, a page at a time, each entry marked with whether the
    /// viewer (the patient, or one proxy) can see it online and, if not, why.
    pub async fn staff_record(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        as_viewer: ViewAs,
        page: &PageRequest,
    ) -> AppResult<StaffRecordPage> {
        let limit = page.limit()?;
        let after = page.cursor.as_deref().map(decode_cursor).transpose()?;
        let l = self.load(who, nhs, Action::RecordViewStaff).await?;
        let (link, identity) = self.resolve_viewer(&l, as_viewer).await?;
        let policy = self.policy_for(&l, link.as_ref(), identity);
        let mut entries = self
            .store
            .entries(l.practice.id, l.patient.id, EntryQuery { section: page.section, after, limit: limit + 1 })
            .await?;
        let next_cursor = if entries.len() > limit as usize {
            entries.truncate(limit as usize);
            entries.last().map(encode_cursor)
        } else {
            None
        };
        let proxies = self.store.proxy_links_for_patient(l.practice.id, l.patient.id).await?;
        let mut proxy_names = Vec::with_capacity(proxies.len());
        for k in &proxies {
            proxy_names.push(self.proxy_name(l.practice.id, k).await?.unwrap_or_default());
        }
        let gp_connect_dissent = self.store.gp_connect_dissent(l.practice.id, l.patient.id).await?;
        let rec = self.audit_record(
            who,
            Some(l.patient.id),
            Action::RecordViewStaff,
            format!("patient/{}", l.patient.id),
            Outcome::Success,
            format!("section={} entries={}", page.section.map_or("all", |s| s.as_str()), entries.len()),
        );
        self.audit.record(l.practice.id, rec).await?;
        Ok(StaffRecordPage {
            entries: entries.into_iter().map(|e| StaffEntry { online: policy.decide(&e).into(), entry: e }).collect(),
            patient: l.patient,
            enhanced_review: l.enhanced_review,
            viewer: ViewerSummary {
                kind: if link.is_some() { "proxy" } else { "patient" },
                proxy_link: link.as_ref().map(|k| k.id),
                identity_level: identity,
            },
            online_access: summarise(&policy),
            access_settings: l.access.clone(),
            proxies,
            proxy_names,
            gp_connect_dissent,
            next_cursor,
        })
    }

    /// A proxy's name, "Given Family", as staff read it.
    async fn proxy_name(&self, practice: PracticeId, link: &ProxyLink) -> AppResult<Option<String>> {
        let proxy = self.store.patient(practice, link.proxy).await?;
        Ok(proxy.map(|p| format!("{} {}", p.name.given, p.name.family)))
    }

    /// Exactly what the patient, or one of their proxies, sees online: a page of the entries the
    /// visibility engine shows, and nothing that hints at the others.
    pub async fn online_view(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        as_viewer: ViewAs,
        page: &PageRequest,
    ) -> AppResult<OnlineViewPage> {
        let limit = page.limit()? as usize;
        let after = page.cursor.as_deref().map(decode_cursor).transpose()?;
        let l = self.load(who, nhs, Action::RecordPreviewOnline).await?;
        let (link, identity) = self.resolve_viewer(&l, as_viewer).await?;
        // Staff preview the viewer's page through the viewer's own reader.
        let view = self.view_of(l, link, identity);
        let viewer_entity = view.link.as_ref().map_or("patient".to_owned(), |k| format!("proxy/{}", k.id));
        let (shown, next_cursor) = view
            .page(self, page.section, after, limit)
            .await?
            .audited(self, view.l.practice.id, |(shown, _)| {
                self.audit_record(
                    who,
                    Some(view.l.patient.id),
                    Action::RecordPreviewOnline,
                    format!("patient/{} as {viewer_entity}", view.l.patient.id),
                    Outcome::Success,
                    format!("section={} entries={}", page.section.map_or("all", |s| s.as_str()), shown.len()),
                )
            })
            .await?;
        let (l, link, policy) = (view.l, view.link, view.policy);
        let proxy_name = match &link {
            Some(k) => self.proxy_name(l.practice.id, k).await?,
            None => None,
        };
        Ok(OnlineViewPage {
            patient: l.patient.id,
            viewer: ViewerSummary {
                kind: if link.is_some() { "proxy" } else { "patient" },
                proxy_link: link.as_ref().map(|k| k.id),
                identity_level: identity,
            },
            access: summarise(&policy),
            entries: shown,
            next_cursor,
            context: PreviewContext {
                enhanced_review_active: l.enhanced_review.is_active(),
                proxy_relationship: link.as_ref().map(|k| k.relationship.clone()),
                proxy_name,
                patient: Some(l.patient),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let e = Entry {
            id: EntryId::from_uuid(Uuid::from_u128(42)),
            patient: PatientId::from_uuid(Uuid::from_u128(1)),
            event_date: NaiveDate::from_ymd_opt(2024, 2, 29).unwrap(),
            entered_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            author: caldicott_core::entry::Author { staff: None, name: "x".into() },
            origin: caldicott_core::entry::Origin::Native,
            code: None,
            body: caldicott_core::entry::EntryBody::Immunisation { vaccine: "x".into() },
            visibility: caldicott_core::entry::OnlineVisibility::Visible,
            nopat: false,
            safeguarding: false,
            confidential: false,
            superseded: None,
        };
        let c = decode_cursor(&encode_cursor(&e)).unwrap();
        assert_eq!(c, EntryCursor::of(&e));
        for bad in ["", "!!!", "djF8eA", &URL_SAFE_NO_PAD.encode("v2|2024-01-01|1|00000000000000000000000000000000")] {
            assert!(matches!(decode_cursor(bad), Err(AppError::BadRequest(_))), "{bad}");
        }
    }

    #[test]
    fn page_limits_are_checked() {
        assert_eq!(PageRequest::default().limit().unwrap(), DEFAULT_PAGE);
        assert!(PageRequest { limit: Some(0), ..Default::default() }.limit().is_err());
        assert!(PageRequest { limit: Some(MAX_PAGE + 1), ..Default::default() }.limit().is_err());
    }
}
