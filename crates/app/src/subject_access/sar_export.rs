//! The subject access export (R33, T37, T38): everything the practice holds about the patient,
//! a decision by a named reviewer on every flagged item, and the release as a tagged PDF and a
//! FHIR R4 Bundle made from the same reviewed items.
//!
//! - Collected: the whole clinical record (hidden entries included: "hidden online" is not
//!   "withheld"), messages sent to the patient, staff messages linked to or naming the patient
//!   (deleted ones too, marked with who and when, R43), tasks and requests, appointments, proxy
//!   decisions, linked apps and the access log, limited to the period the request covers.
//! - Flagged for a decision: entries hidden online or marked safeguarding, confidential or not for
//!   the patient, entries the redaction assistant points at (third parties, sensitive subjects),
//!   and every staff message. Nothing flagged is released until a reviewer decides it; a withheld
//!   item needs a ground (third party, serious harm, other exemption) and a reason.
//! - Released: made on request, held in the database only until collected (each file once, by
//!   the member of staff who released it, with an audit event) and for 15 minutes at most, so
//!   that any server behind a load balancer shows the progress and hands the files over. The
//!   release is recorded (who, when, the file's SHA-256 and counts) with its audit event. The
//!   same reviewed items on the same day give the same bytes.

use crate::governance::parse_date_parts;
use crate::permit;
use crate::settings::FieldProblem;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::access::{ProxyLink, ProxyStatus};
use caldicott_core::audit::{Action, Outcome};
use caldicott_core::entry::{Entry, EntryBody, OnlineVisibility};
use caldicott_core::patient::Patient;
use caldicott_core::permissions::Permission;
use caldicott_core::practice::Practice;
use caldicott_fhir::write::{self as fhir, instant};
use caldicott_pdf::{Block, PdfDocument};
pub use caldicott_store::sar::{ExportFile, ExportFileFacts, ExportJob};
use caldicott_store::sar::{ExportFiles, SarDecision, SarRelease, SarRequest};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// Where an item sits in the export, in the order the sections are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemSection {
    Record,
    Communications,
    StaffMessages,
    Tasks,
    Appointments,
    Proxies,
    LinkedApps,
    AccessLog,
}

impl ItemSection {
    pub const ALL: [ItemSection; 8] = [
        Self::Record,
        Self::Communications,
        Self::StaffMessages,
        Self::Tasks,
        Self::Appointments,
        Self::Proxies,
        Self::LinkedApps,
        Self::AccessLog,
    ];
    pub fn display(self) -> &'static str {
        match self {
            Self::Record => "Clinical record",
            Self::Communications => "Messages and letters sent to you",
            Self::StaffMessages => "Messages between practice staff about you",
            Self::Tasks => "Requests and tasks",
            Self::Appointments => "Appointments",
            Self::Proxies => "People given access to act for you online",
            Self::LinkedApps => "Apps linked to your record",
            Self::AccessLog => "Who has looked at or changed your record",
        }
    }
}

/// One thing the practice holds about the patient.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SarItem {
    pub key: String,
    pub section: ItemSection,
    pub date: NaiveDate,
    pub at: DateTime<Utc>,
    pub title: String,
    pub lines: Vec<String>,
    /// Why a reviewer must decide this item before release (empty: released as it is).
    pub flags: Vec<String>,
    /// The item as a FHIR R4 resource, serialised (compact JSON): kept as text, because 10,000
    /// parsed resources would hold several times the memory.
    #[serde(skip)]
    pub resource: Box<str>,
}

impl SarItem {
    pub fn flagged(&self) -> bool {
        !self.flags.is_empty()
    }
}

/// Grounds for withholding an item (DPA 2018 Sch. 2 Part 3 para 16; Sch. 3 Part 2 para 2).
pub const GROUNDS: [(&str, &str); 3] = [
    ("third_party", "Information about or from another person, without their consent"),
    ("serious_harm", "Likely to cause serious harm to the physical or mental health of the patient or another person"),
    ("other_exemption", "Another exemption under the Data Protection Act 2018"),
];

pub fn ground_display(g: &str) -> &'static str {
    GROUNDS.iter().find(|(k, _)| *k == g).map_or("Exemption", |(_, d)| d)
}

/// The review of a request: every item with its decision, and what still stands in the way.
#[derive(Debug, Clone)]
pub struct SarReview {
    pub sar: SarRequest,
    pub patient: Patient,
    pub items: Vec<SarItem>,
    pub decisions: HashMap<String, SarDecision>,
    /// Flagged items without a decision.
    pub undecided: usize,
    /// Why the export cannot be released yet (empty: it can).
    pub blockers: Vec<String>,
    pub releases: Vec<SarRelease>,
}

impl SarReview {
    pub fn withheld(&self) -> usize {
        self.items.iter().filter(|i| self.is_withheld(&i.key)).count()
    }
    pub fn is_withheld(&self, key: &str) -> bool {
        self.decisions.get(key).is_some_and(|d| d.decision == "withhold")
    }
    pub fn flagged(&self) -> usize {
        self.items.iter().filter(|i| i.flagged()).count()
    }
}

/// A decision as typed by the reviewer.
#[derive(Debug, Clone, Default)]
pub struct DecisionInput {
    pub keys: Vec<String>,
    /// "release" or "withhold".
    pub decision: String,
    pub ground: String,
    pub reason: String,
}

/// Scope and authority as typed.
#[derive(Debug, Clone, Default)]
pub struct ScopeInput {
    pub from: (String, String, String),
    pub to: (String, String, String),
    pub authority: String,
}

/// How far an export has got.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExportProgress {
    pub stage: String,
    pub done: usize,
    pub total: usize,
}

pub type ProgressFn = Arc<dyn Fn(ExportProgress) + Send + Sync>;

/// The two files of a release, made from the same reviewed items.
#[derive(Clone)]
pub struct SarFiles {
    pub pdf: Vec<u8>,
    pub bundle: Vec<u8>,
    pub pdf_sha256: String,
    pub bundle_sha256: String,
    pub released: usize,
    pub withheld: usize,
    pub file_stem: String,
}

impl std::fmt::Debug for SarFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SarFiles")
            .field("pdf_bytes", &self.pdf.len())
            .field("bundle_bytes", &self.bundle.len())
            .field("released", &self.released)
            .field("withheld", &self.withheld)
            .finish()
    }
}

fn long_date(d: NaiveDate) -> String {
    d.format("%-d %B %Y").to_string()
}

fn long_time(t: DateTime<Utc>) -> String {
    t.format("%-d %B %Y %H:%M UTC").to_string()
}

/// Why an entry needs a person's decision before release.
fn entry_flags(e: &Entry, today: NaiveDate) -> Vec<String> {
    let mut out = Vec::new();
    if let OnlineVisibility::Hidden(r) = &e.visibility {
        out.push(format!("Hidden online: {} ({})", r.reason().display(), r.note()));
    }
    if e.nopat {
        out.push("Marked not for the patient (NOPAT)".into());
    }
    if e.safeguarding {
        out.push("Marked safeguarding".into());
    }
    if e.confidential {
        out.push("Marked confidential".into());
    }
    if e.awaits_filing() {
        out.push("Not yet filed by a clinician".into());
    }
    // The assistant reads entries that are visible; for hidden ones the flags above already ask.
    let visible = Entry { visibility: OnlineVisibility::Visible, nopat: false, ..e.clone() };
    for h in caldicott_core::governance::assist(&visible, today) {
        let line = h.explain();
        if !out.contains(&line) && !line.starts_with("Marked ") {
            out.push(line);
        }
    }
    out
}

fn entry_lines(e: &Entry) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(c) = &e.code {
        lines.push(format!("Code: {} (SNOMED CT {})", c.term, c.concept.as_str()));
    }
    match &e.body {
        EntryBody::Coded { value } => lines.extend(value.clone().filter(|v| !v.is_empty())),
        EntryBody::Consultation { text, .. }
        | EntryBody::OnlineConsultation { text }
        | EntryBody::SystemSms { text } => lines.push(text.clone()),
        EntryBody::Medication { drug, dosage, quantity, .. }
        | EntryBody::MedicationIssue { drug, dosage, quantity, .. } => {
            lines.push(format!("{drug}. {dosage}. Quantity: {quantity}"))
        }
        EntryBody::TestResult { test, value, unit, range, abnormal, .. } => lines.push(format!(
            "{test}: {value} {unit}{}{}",
            if range.is_empty() { String::new() } else { format!(" (range {range})") },
            if *abnormal { ". Outside the normal range" } else { "" }
        )),
        EntryBody::Document { title, summary, .. } => {
            lines.push(title.clone());
            if !summary.is_empty() {
                lines.push(summary.clone());
            }
        }
        EntryBody::Allergy { substance, reaction } => lines.push(format!("{substance}. Reaction: {reaction}")),
        EntryBody::Immunisation { vaccine } => lines.push(vaccine.clone()),
        EntryBody::Problem { title, active } => {
            lines.push(format!("{title} ({})", if *active { "active" } else { "past" }))
        }
        EntryBody::AdminMessage { subject, text, .. } => {
            lines.push(format!("Subject: {subject}"));
            lines.push(text.clone());
        }
        EntryBody::Diary { text, due } => lines.push(format!("{text} (due {})", long_date(*due))),
        EntryBody::CarePlan { condition, review } => {
            lines.push(format!("Care plan: {condition}"));
            lines.extend(review.map(|r| format!("Review by {}", long_date(r))));
        }
        EntryBody::CarePlanPart { part, text, .. } => lines.push(format!("{}: {text}", part.heading())),
    }
    let origin = match &e.origin {
        caldicott_core::entry::Origin::Native => String::new(),
        caldicott_core::entry::Origin::PatientEntered => ", entered online by the patient or for them".into(),
        caldicott_core::entry::Origin::TransferredIn { from_ods } => format!(", transferred from practice {from_ods}"),
        caldicott_core::entry::Origin::Inbound { sender_ods } => format!(", sent by {sender_ods}"),
    };
    lines.push(format!("Recorded by {} on {}{origin}", e.author.name, long_time(e.entered_at)));
    lines
}

fn in_period(sar: &SarRequest, d: NaiveDate) -> bool {
    sar.period_from.is_none_or(|f| d >= f) && sar.period_to.is_none_or(|t| d <= t)
}

fn proxy_words(l: &ProxyLink) -> String {
    match &l.status {
        ProxyStatus::Active => "active".into(),
        ProxyStatus::Suspended { since, reason } => format!("suspended since {} ({reason})", long_date(*since)),
        ProxyStatus::Revoked { on, reason } => format!("ended on {} ({reason})", long_date(*on)),
        ProxyStatus::Refused { on, reason } => format!("refused on {} ({reason})", long_date(*on)),
    }
}

impl App {
    /// Refuses anyone who may not review or release a subject access export (403).
    pub fn may_release_sar(&self, who: &StaffPrincipal) -> AppResult<()> {
        permit(who, Permission::HandleSubjectAccessRequests)?;
        permit(who, Permission::ReleaseSubjectAccessExports)
    }

    /// Everything held about the patient within the request's period, in print order.
    async fn collect_sar_items(
        &self,
        practice: &Practice,
        sar: &SarRequest,
        patient: &Patient,
        progress: &ProgressFn,
    ) -> AppResult<Vec<SarItem>> {
        let p = practice.id;
        let today = self.today();
        let subject = json!({ "reference": format!("Patient/{}", patient.id) });
        let staff: HashMap<String, String> =
            self.store.staff_members(p).await?.into_iter().map(|s| (s.id.to_string(), s.display_name)).collect();
        let mut items = Vec::new();
        let query = caldicott_store::EntryQuery { section: None, after: None, limit: u32::MAX };
        let entries = self.store.entries(p, patient.id, query).await?;
        progress(ExportProgress { stage: "Collecting the record".into(), done: 0, total: entries.len() });
        // Documents' files go into the FHIR Bundle inline. An issue does not point at its repeat
        // here: either may be withheld at review, and a reference would say the other exists.
        let documents: Vec<caldicott_core::ids::EntryId> = entries
            .iter()
            .filter(|e| e.kind() == caldicott_core::entry::EntryKind::Document && in_period(sar, e.event_date))
            .map(|e| e.id)
            .collect();
        let cx = fhir::Context {
            today: self.today(),
            files: self.store.document_files(p, &documents).await?.into_iter().collect(),
            entries: fhir::EntryRefs::Only(Default::default()),
            practitioners: Default::default(),
        };
        for e in &entries {
            if !in_period(sar, e.event_date) {
                continue;
            }
            let mut resource = fhir::entry_resource(e, fhir::Label::None, &cx);
            let mut lines = entry_lines(e);
            if let Some(info) = cx.files.get(&e.id) {
                if let Some(f) = self.store.document_file(p, e.id).await? {
                    let a = &mut resource["content"][0]["attachment"];
                    a["data"] =
                        Value::String(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &f.content));
                    if let Some(o) = a.as_object_mut() {
                        o.remove("url");
                    }
                }
                lines.push(format!(
                    "The document itself ({}, {} KB) is in the FHIR file that comes with this letter",
                    crate::documents::ACCEPTED.iter().find(|a| a.0 == info.content_type).map_or("a file", |a| a.1),
                    info.size.div_ceil(1024)
                ));
            }
            items.push(SarItem {
                key: format!("entry/{}", e.id),
                section: ItemSection::Record,
                date: e.event_date,
                at: e.entered_at,
                title: format!("{}: {}", long_date(e.event_date), e.kind().display()),
                lines,
                flags: entry_flags(e, today),
                resource: compact(&resource),
            });
        }
        for m in self.store.messages_for_patient(p, patient.id).await? {
            let d = caldicott_core::uk::uk_date(m.created_at);
            if !in_period(sar, d) {
                continue;
            }
            let mut lines = Vec::new();
            if !m.subject.is_empty() {
                lines.push(format!("Subject: {}", m.subject));
            }
            lines.push(m.body.clone());
            lines.push(format!("Status: {}", m.status.as_str()));
            items.push(SarItem {
                key: format!("message/{}", m.id),
                section: ItemSection::Communications,
                date: d,
                at: m.created_at,
                title: format!("{}: {} to {}", long_date(d), m.channel.as_str(), m.recipient),
                lines,
                flags: Vec::new(),
                resource: compact(&json!({
                    "resourceType": "Communication",
                    "id": m.id.to_string(),
                    "status": if m.sent_at.is_some() { "completed" } else { "in-progress" },
                    "category": [{ "text": format!("{} from the practice", m.channel.as_str()) }],
                    "medium": [{ "text": m.channel.as_str() }],
                    "subject": subject,
                    "sent": instant(m.sent_at.unwrap_or(m.created_at)),
                    "recipient": [{ "display": m.recipient }],
                    "topic": { "text": if m.subject.is_empty() { m.purpose.clone() } else { m.subject.clone() } },
                    "payload": [{ "contentString": m.body }],
                })),
            });
        }
        // Staff messages linked to the patient, and any naming them (by NHS number or name).
        let nhs = patient.nhs_number.as_str().to_owned();
        let phrases = vec![
            nhs.clone(),
            patient.nhs_number.to_string(),
            format!("{}-{}-{}", &nhs[..3], &nhs[3..6], &nhs[6..]),
            format!("{} {}", patient.name.given, patient.name.family),
            format!("{}, {}", patient.name.family, patient.name.given),
        ];
        let mut seen = HashSet::new();
        let mut messages = self.store.staff_messages_about(p, patient.id).await?;
        messages.extend(self.store.staff_messages_naming(p, &phrases).await?);
        messages.sort_by_key(|m| (m.sent_at, m.id));
        for m in messages {
            if !seen.insert(m.id) || !in_period(sar, caldicott_core::uk::uk_date(m.sent_at)) {
                continue;
            }
            let to = match (&m.to_staff, &m.to_team) {
                (Some(s), _) => staff.get(&s.to_string()).cloned().unwrap_or_else(|| "a member of staff".into()),
                (None, Some(team)) => format!("the {} team", team.replace('_', " ")),
                _ => "staff".into(),
            };
            let mut lines = vec![format!("From {} to {to}", m.sender_name), m.body.clone()];
            let mut notes = Vec::new();
            if let (Some(at), Some(by)) = (m.deleted_at, &m.deleted_by) {
                let line = format!("Deleted from the inbox by {by} on {}; kept as the law requires", long_time(at));
                lines.push(line.clone());
                notes.push(json!({ "text": line }));
            }
            if m.patient.is_none() {
                lines.push("Not linked to the record; found because it names you".into());
            }
            let mut resource = json!({
                "resourceType": "Communication",
                "id": m.id.to_string(),
                "status": "completed",
                "category": [{ "text": "Staff message" }],
                "subject": subject,
                "sent": instant(m.sent_at),
                "sender": { "display": m.sender_name },
                "recipient": [{ "display": to }],
                "payload": [{ "contentString": m.body }],
            });
            if !notes.is_empty() {
                resource["note"] = Value::Array(notes);
            }
            let d = caldicott_core::uk::uk_date(m.sent_at);
            items.push(SarItem {
                key: format!("staff_message/{}", m.id),
                section: ItemSection::StaffMessages,
                date: d,
                at: m.sent_at,
                title: format!("{}: staff message", long_time(m.sent_at)),
                lines,
                flags: vec!["Staff message: check it for information about other people".into()],
                resource: compact(&resource),
            });
        }
        for t in self.store.tasks_for_patient(p, patient.id).await? {
            let d = caldicott_core::uk::uk_date(t.created_at);
            if !in_period(sar, d) {
                continue;
            }
            let detail = match &t.body {
                caldicott_core::tasks::TaskBody::Repeat { items, note, .. } => {
                    let drugs: Vec<String> = items.iter().map(|i| format!("{} ({})", i.drug, i.dosage)).collect();
                    format!(
                        "{}{}",
                        drugs.join("; "),
                        if note.is_empty() { String::new() } else { format!(". Note: {note}") }
                    )
                }
                caldicott_core::tasks::TaskBody::Message { text }
                | caldicott_core::tasks::TaskBody::Letter { text, .. } => text.clone(),
                caldicott_core::tasks::TaskBody::Inbound { summary, .. } => summary.clone(),
            };
            let mut lines = vec![format!("Asked by {}", t.requested_by), detail.clone()];
            if let Some(o) = &t.outcome {
                lines.push(format!("Outcome: {o}"));
            }
            let mut resource = json!({
                "resourceType": "Task",
                "id": t.id.to_string(),
                "status": if t.status == caldicott_core::tasks::TaskStatus::Done { "completed" } else { "requested" },
                "intent": "order",
                "code": { "text": t.kind.display() },
                "description": detail,
                "for": subject,
                "authoredOn": instant(t.created_at),
            });
            if let Some(o) = &t.outcome {
                resource["note"] = json!([{ "text": o }]);
            }
            items.push(SarItem {
                key: format!("task/{}", t.id),
                section: ItemSection::Tasks,
                date: d,
                at: t.created_at,
                title: format!("{}: {}", long_date(d), t.kind.display()),
                lines,
                flags: Vec::new(),
                resource: compact(&resource),
            });
        }
        for (a, slot) in self.store.appointments_for_patient(p, patient.id).await? {
            let d = caldicott_core::uk::uk_date(slot.starts_at);
            if !in_period(sar, d) {
                continue;
            }
            let mut lines = vec![
                format!("{} with {} at {}", slot.slot_type.display(), slot.clinician_name, slot.location),
                format!("Booked {} on {}", a.booked_by, long_time(a.booked_at)),
            ];
            if let Some(c) = a.cancelled_at {
                lines.push(format!(
                    "Cancelled on {}{}",
                    long_time(c),
                    a.cancelled_by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default()
                ));
            }
            items.push(SarItem {
                key: format!("appointment/{}", a.id),
                section: ItemSection::Appointments,
                date: d,
                at: slot.starts_at,
                title: format!("{}: appointment", long_time(slot.starts_at)),
                lines,
                flags: Vec::new(),
                resource: compact(&fhir::appointment_resource(&a, &slot, self.now())),
            });
        }
        for l in self.store.proxy_links_for_patient(p, patient.id).await? {
            if !in_period(sar, l.granted_on) {
                continue;
            }
            let proxy = self.store.patient(p, l.proxy).await?;
            let name = proxy.as_ref().map(|x| format!("{} {}", x.name.given, x.name.family)).unwrap_or_default();
            let status = proxy_words(&l);
            let lines = vec![
                format!("{name} ({}), on the basis of {}", l.relationship, l.basis.as_str().replace('_', " ")),
                format!(
                    "Access: {}; appointments {}, prescriptions {}",
                    l.scope.record.display(),
                    if l.scope.appointments { "yes" } else { "no" },
                    if l.scope.prescriptions { "yes" } else { "no" }
                ),
                format!("Decided by {}; {status}", l.decided_by),
            ];
            let mut resource = json!({
                "resourceType": "RelatedPerson",
                "id": l.id.to_string(),
                "active": matches!(l.status, ProxyStatus::Active),
                "patient": subject,
                "relationship": [{ "text": l.relationship }],
                "name": [{ "text": name }],
                "period": { "start": l.granted_on.to_string() },
                "text": fhir::narrative(&lines.iter().map(String::as_str).collect::<Vec<_>>()),
            });
            if let Some(end) = l.ends_on {
                resource["period"]["end"] = Value::String(end.to_string());
            }
            items.push(SarItem {
                key: format!("proxy/{}", l.id),
                section: ItemSection::Proxies,
                date: l.granted_on,
                at: l.granted_on.and_time(chrono::NaiveTime::MIN).and_utc(),
                title: format!("{}: proxy access", long_date(l.granted_on)),
                lines,
                flags: Vec::new(),
                resource: compact(&resource),
            });
        }
        for (link, app) in self.store.app_links_for_patient(p, patient.id).await? {
            let d = caldicott_core::uk::uk_date(link.linked_at);
            if !in_period(sar, d) {
                continue;
            }
            let mut lines =
                vec![format!("{} by {}", app.name, app.supplier), format!("Linked on {}", long_time(link.linked_at))];
            if let Some(r) = link.revoked_at {
                lines.push(format!(
                    "Unlinked on {}{}",
                    long_time(r),
                    link.revoked_why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default()
                ));
            }
            items.push(SarItem {
                key: format!("app/{}", link.id),
                section: ItemSection::LinkedApps,
                date: d,
                at: link.linked_at,
                title: format!("{}: app linked", long_date(d)),
                resource: compact(&json!({
                    "resourceType": "Consent",
                    "id": link.id.to_string(),
                    "status": if link.revoked_at.is_some() { "inactive" } else { "active" },
                    "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
                    "category": [{ "text": "Third-party app linked to the record" }],
                    "patient": subject,
                    "dateTime": instant(link.linked_at),
                    "text": fhir::narrative(&lines.iter().map(String::as_str).collect::<Vec<_>>()),
                })),
                lines,
                flags: Vec::new(),
            });
        }
        let this_request = format!("sar/{}", sar.id);
        for ev in self.store.audit_for_patient(p, patient.id, 1_000_000).await? {
            let d = caldicott_core::uk::uk_date(ev.at);
            // Answering this request is not part of what it asks for: its own review, decisions
            // and releases stay out, so the same review gives the same files (T37).
            if !in_period(sar, d) || ev.entity.starts_with(&this_request) {
                continue;
            }
            let who = staff.get(&ev.actor_id).cloned().unwrap_or_else(|| match ev.actor_kind.as_str() {
                "patient" => "You, or someone acting for you, online".into(),
                k => k.replace('_', " "),
            });
            let what = crate::trail::describe_action(&ev.action);
            items.push(SarItem {
                key: format!("audit/{}", ev.seq),
                section: ItemSection::AccessLog,
                date: d,
                at: ev.at,
                title: format!("{}: {who}: {what}", long_time(ev.at)),
                lines: Vec::new(),
                flags: Vec::new(),
                resource: compact(&json!({
                    "resourceType": "AuditEvent",
                    "id": format!("audit-{}", ev.seq),
                    "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation" },
                    "subtype": [{ "code": ev.action, "display": what }],
                    "recorded": instant(ev.at),
                    "outcome": if ev.outcome == "success" { "0" } else { "4" },
                    "agent": [{ "who": { "display": who }, "requestor": true }],
                    "source": { "observer": { "display": practice.name } },
                    "entity": [{ "what": subject }],
                })),
            });
        }
        items.sort_by(|a, b| (a.section, a.at, &a.key).cmp(&(b.section, b.at, &b.key)));
        progress(ExportProgress { stage: "Checking the decisions".into(), done: 0, total: items.len() });
        Ok(items)
    }

    async fn load_sar(&self, who: &StaffPrincipal, id: Uuid) -> AppResult<(Practice, SarRequest, Patient)> {
        permit(who, Permission::HandleSubjectAccessRequests)?;
        let sar =
            self.store.sar(who.practice, id).await?.ok_or_else(|| AppError::NotFound("no such request".into()))?;
        let patient = self
            .store
            .patient(who.practice, sar.patient)
            .await?
            .ok_or_else(|| AppError::NotFound("no such patient".into()))?;
        let practice =
            self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("no such practice".into()))?;
        Ok((practice, sar, patient))
    }

    async fn build_review(
        &self,
        who: &StaffPrincipal,
        id: Uuid,
        progress: &ProgressFn,
    ) -> AppResult<(Practice, SarReview)> {
        let (practice, sar, patient) = self.load_sar(who, id).await?;
        let items = self.collect_sar_items(&practice, &sar, &patient, progress).await?;
        let decisions: HashMap<String, SarDecision> =
            self.store.sar_decisions(who.practice, id).await?.into_iter().map(|d| (d.item_key.clone(), d)).collect();
        let undecided = items.iter().filter(|i| i.flagged() && !decisions.contains_key(&i.key)).count();
        let mut blockers = Vec::new();
        if matches!(sar.status.as_str(), "refused" | "withdrawn") {
            blockers.push(format!("The request is {}", sar.status));
        }
        if let Some(w) = &sar.waiting_for {
            blockers.push(format!("The practice is still waiting for {w}"));
        }
        if sar.relationship != "the patient" && sar.authority.as_deref().is_none_or(|a| a.trim().is_empty()) {
            blockers.push(format!(
                "The requester is not the patient ({}): record the authority they hold (consent, power of attorney, court order)",
                sar.relationship
            ));
        }
        if undecided > 0 {
            blockers.push(format!(
                "{undecided} flagged item{} still need{} a decision",
                if undecided == 1 { "" } else { "s" },
                if undecided == 1 { "s" } else { "" }
            ));
        }
        let releases = self.store.sar_releases(who.practice, id).await?;
        Ok((practice, SarReview { sar, patient, items, decisions, undecided, blockers, releases }))
    }

    /// The review page: every item, flagged ones first to decide. Reading it reads the whole
    /// record, so it is audited as a record view.
    pub async fn sar_review(&self, who: &StaffPrincipal, id: Uuid) -> AppResult<SarReview> {
        let quiet: ProgressFn = Arc::new(|_| {});
        let (_, review) = self.build_review(who, id, &quiet).await?;
        self.audit_look(
            who,
            Some(review.patient.id),
            Action::SarReview,
            format!("sar/{id}"),
            format!("items={} flagged={} undecided={}", review.items.len(), review.flagged(), review.undecided),
        )
        .await?;
        Ok(review)
    }

    /// Records a reviewer's decision on one or more items (R33), audited per item.
    pub async fn decide_sar_items(
        &self,
        who: &StaffPrincipal,
        id: Uuid,
        input: &DecisionInput,
    ) -> AppResult<Result<usize, Vec<FieldProblem>>> {
        permit(who, Permission::HandleSubjectAccessRequests)?;
        permit(who, Permission::ReleaseSubjectAccessExports)?;
        let (practice, sar, patient) = self.load_sar(who, id).await?;
        if !matches!(sar.status.as_str(), "open" | "extended" | "released") {
            return Err(AppError::Conflict(format!("this request is {}", sar.status)));
        }
        let mut problems = Vec::new();
        let decision = input.decision.trim();
        let ground = input.ground.trim();
        let reason = input.reason.trim();
        match decision {
            "release" => {}
            "withhold" => {
                if !GROUNDS.iter().any(|(g, _)| *g == ground) {
                    problems
                        .push(FieldProblem { field: "ground", message: "Choose the ground for withholding".into() });
                }
                if reason.is_empty() {
                    problems.push(FieldProblem {
                        field: "reason",
                        message: "Give the reason for withholding; it stays in the review record (R33)".into(),
                    });
                }
                if ground == "serious_harm" && !Permission::JudgeSeriousHarm.allows(who.role) {
                    problems.push(FieldProblem {
                        field: "ground",
                        message: "Only a clinician can judge serious harm (the appropriate health professional)".into(),
                    });
                }
            }
            _ => problems.push(FieldProblem { field: "decision", message: "Choose release or withhold".into() }),
        }
        if reason.chars().count() > 2000 {
            problems
                .push(FieldProblem { field: "reason", message: "The reason can be at most 2,000 characters".into() });
        }
        if input.keys.is_empty() {
            problems.push(FieldProblem { field: "keys", message: "Choose at least one item".into() });
        }
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        let quiet: ProgressFn = Arc::new(|_| {});
        let items = self.collect_sar_items(&practice, &sar, &patient, &quiet).await?;
        let known: HashSet<&str> = items.iter().map(|i| i.key.as_str()).collect();
        if let Some(k) = input.keys.iter().find(|k| !known.contains(k.as_str())) {
            return Err(AppError::NotFound(format!("{k} is not part of this request")));
        }
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let decisions: Vec<SarDecision> = input
            .keys
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|k| SarDecision {
                item_key: k.clone(),
                decision: decision.to_owned(),
                ground: (decision == "withhold").then(|| ground.to_owned()),
                reason: reason.to_owned(),
                decided_by: who.name.clone(),
                decided_at: now,
            })
            .collect();
        let audit: Vec<_> = decisions
            .iter()
            .map(|d| {
                self.audit_record(
                    who,
                    Some(patient.id),
                    Action::SarDecide,
                    format!("sar/{id}/{}", d.item_key),
                    Outcome::Success,
                    format!("{}{}", d.decision, d.ground.as_ref().map(|g| format!(" ground={g}")).unwrap_or_default()),
                )
            })
            .collect();
        self.store.record_sar_decisions(who.practice, id, &decisions, &audit).await?;
        Ok(Ok(decisions.len()))
    }

    /// Sets the period a request covers and the requester's authority.
    pub async fn set_sar_scope(
        &self,
        who: &StaffPrincipal,
        id: Uuid,
        input: &ScopeInput,
    ) -> AppResult<Result<SarRequest, Vec<FieldProblem>>> {
        permit(who, Permission::HandleSubjectAccessRequests)?;
        let (_, mut sar, patient) = self.load_sar(who, id).await?;
        if !matches!(sar.status.as_str(), "open" | "extended") {
            return Err(AppError::Conflict("this request is closed".into()));
        }
        let mut problems = Vec::new();
        let mut date =
            |field: &'static str, (d, m, y): &(String, String, String), what: &str| match parse_date_parts(d, m, y) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(FieldProblem { field, message: format!("The {what} date {e}") });
                    None
                }
            };
        let from = date("from", &input.from, "first");
        let to = date("to", &input.to, "last");
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                problems
                    .push(FieldProblem { field: "to", message: "The last date must be on or after the first".into() });
            }
        }
        let authority = input.authority.trim();
        if authority.chars().count() > 500 {
            problems.push(FieldProblem { field: "authority", message: "Keep the authority to 500 characters".into() });
        }
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        sar.period_from = from;
        sar.period_to = to;
        sar.authority = Some(authority.to_owned()).filter(|a| !a.is_empty());
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::SarUpdate,
            format!("sar/{id}"),
            Outcome::Success,
            format!(
                "scope from={} to={} authority={}",
                from.map_or("start".into(), |d| d.to_string()),
                to.map_or("now".into(), |d| d.to_string()),
                if sar.authority.is_some() { "recorded" } else { "none" }
            ),
        );
        self.store.set_sar_scope(who.practice, &sar, &audit).await?;
        Ok(Ok(sar))
    }

    /// Confirms a member of staff's password before a sensitive step (ASVS 7.5.3). A wrong
    /// password is audited and refused.
    /// The re-check is a try at the password like a sign-in's: claimed first, and refused
    /// unchecked while a wait from wrong tries is due.
    pub async fn confirm_password(
        &self,
        who: &StaffPrincipal,
        password: &str,
        why: &str,
        from: &crate::auth::Client,
    ) -> AppResult<()> {
        let staff = self
            .store
            .staff_member(who.practice, who.staff)
            .await?
            .ok_or_else(|| AppError::Unauthenticated("Sign in again".into()))?;
        let subject = caldicott_core::credentials::Subject::staff(&staff.username);
        let tried = self.try_password(who.practice, &subject, from, Some(&staff.password_hash), password).await?;
        if tried == crate::session::Tried::Right {
            self.clear_tries(who.practice, &subject, from).await?;
            return Ok(());
        }
        let detail = tried.why("password not confirmed");
        let audit = self.audit_record(
            who,
            None,
            Action::SarExport,
            why,
            Outcome::Denied,
            format!("{detail}; from {}", from.key()),
        );
        self.audit.record(who.practice, audit).await?;
        Err(AppError::Unauthenticated(
            "That is not your password, or there have been several wrong tries: wait a minute, then enter it again to release the export."
                .into(),
        ))
    }

    /// Makes the release: the PDF and the FHIR Bundle from the same reviewed items, recorded
    /// with their hashes and audited. Refused while anything stands in the way.
    pub async fn export_sar(&self, who: &StaffPrincipal, id: Uuid, progress: ProgressFn) -> AppResult<SarFiles> {
        permit(who, Permission::HandleSubjectAccessRequests)?;
        permit(who, Permission::ReleaseSubjectAccessExports)?;
        let (practice, review) = self.build_review(who, id, &progress).await?;
        if !review.blockers.is_empty() {
            let audit = self.audit_record(
                who,
                Some(review.patient.id),
                Action::SarExport,
                format!("sar/{id}"),
                Outcome::Denied,
                review.blockers.join("; "),
            );
            self.audit.record(who.practice, audit).await?;
            return Err(AppError::Conflict(format!("Not ready to release: {}", review.blockers.join("; "))));
        }
        let today = self.today();
        let released_by = who.name.clone();
        let render_progress = progress.clone();
        let files = tokio::task::spawn_blocking(move || render_files(&practice, &review, today, &render_progress))
            .await
            .map_err(|e| AppError::Internal(format!("export: {e}")))??;
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let (_, sar, patient) = self.load_sar(who, id).await?;
        let mut releases = Vec::new();
        let mut audit = Vec::new();
        for (format, sha, bytes) in
            [("pdf", &files.pdf_sha256, files.pdf.len()), ("fhir", &files.bundle_sha256, files.bundle.len())]
        {
            releases.push(SarRelease {
                id: new_id(),
                sar: sar.id,
                released_at: now,
                released_by: released_by.clone(),
                format: format.into(),
                sha256: sha.clone(),
                bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
                items_released: i64::try_from(files.released).unwrap_or(i64::MAX),
                items_withheld: i64::try_from(files.withheld).unwrap_or(i64::MAX),
            });
            audit.push(self.audit_record(
                who,
                Some(patient.id),
                Action::SarExport,
                format!("sar/{id}"),
                Outcome::Success,
                format!(
                    "disclosure format={format} sha256={sha} bytes={bytes} released={} withheld={} requester={}",
                    files.released, files.withheld, sar.requester
                ),
            ));
        }
        self.store.record_sar_release(who.practice, &releases, &audit).await?;
        progress(ExportProgress { stage: "Ready".into(), done: 1, total: 1 });
        Ok(files)
    }
}

fn compact(v: &Value) -> Box<str> {
    v.to_string().into_boxed_str()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The cover letter with the supplementary information the ICO says a response must give.
fn cover_letter(
    practice: &Practice,
    review: &SarReview,
    today: NaiveDate,
    withheld: &BTreeMap<String, usize>,
) -> Vec<Block> {
    let sar = &review.sar;
    let p = &review.patient;
    let mut blocks = vec![
        Block::Para(long_date(today)),
        Block::Para(format!(
            "Dear {},",
            if sar.relationship == "the patient" {
                format!("{} {}", p.name.given, p.name.family)
            } else {
                sar.requester.clone()
            }
        )),
        Block::Heading(1, format!("Your subject access request for the records of {} {}", p.name.given, p.name.family)),
        Block::Para(format!(
            "We received your request on {}. This is our response under Article 15 of the UK General Data \
             Protection Regulation. It covers the records of {} {} (NHS number {}, born {}){}.",
            long_date(sar.received),
            p.name.given,
            p.name.family,
            p.nhs_number,
            long_date(p.date_of_birth),
            match (sar.period_from, sar.period_to) {
                (None, None) => ", for the whole time we have held them".to_owned(),
                (Some(f), None) => format!(", from {} to today, as you asked", long_date(f)),
                (None, Some(t)) => format!(", up to {}, as you asked", long_date(t)),
                (Some(f), Some(t)) => format!(", from {} to {}, as you asked", long_date(f), long_date(t)),
            }
        )),
        Block::Para(
            "Enclosed is a copy of the personal data we hold: the clinical record, the messages and letters we \
             sent, messages between our staff about you, your requests and appointments, the people given \
             access to act for you, the apps linked to your record, and a log of who has looked at or changed \
             it. The same information comes as a FHIR R4 file that health apps can read."
                .into(),
        ),
    ];
    if withheld.is_empty() {
        blocks.push(Block::Para("We have not withheld anything.".into()));
    } else {
        let total: usize = withheld.values().sum();
        let mut text = format!(
            "We have withheld {total} item{} under exemptions in the Data Protection Act 2018:",
            if total == 1 { "" } else { "s" }
        );
        for (g, n) in withheld {
            text.push_str(&format!("\n- {n}: {}", ground_display(g)));
        }
        blocks.push(Block::Para(text));
    }
    blocks.extend([
        Block::Heading(2, "What we do with your information".into()),
        Block::Para(
            "Purposes: we use your information to provide your health care, to keep you safe, to run the \
             practice, and where the law requires it (for example public health and NHS England's statutory \
             collections)."
                .into(),
        ),
        Block::Para(
            "Who receives it: health and care professionals involved in your care (hospitals, community \
             services, pharmacies, out-of-hours services), NHS England and other bodies where the law \
             requires, and apps you have linked to your record yourself."
                .into(),
        ),
        Block::Para(
            "Where it comes from: you, the practice team, other health and care organisations who treat you \
             (hospital letters, results, pharmacy consultation summaries), and practices you were registered \
             with before."
                .into(),
        ),
        Block::Para(
            "How long we keep it: GP records are kept for as long as you are registered, and then as the \
             Records Management Code of Practice 2021 sets out (for example 10 years after death)."
                .into(),
        ),
        Block::Para("Automated decisions: we make no decisions about you by automated means alone.".into()),
        Block::Heading(2, "Your rights".into()),
        Block::Para(
            "You can ask us to correct information that is wrong, to restrict how we use it, or object to \
             how we use it. If you disagree with something in your record we will add your view to it. You \
             can complain to the Information Commissioner's Office: ico.org.uk/make-a-complaint, telephone \
             0303 123 1113."
                .into(),
        ),
        Block::Para(format!(
            "If you have any questions, contact us on {} or write to us at the address above.",
            practice.telephone
        )),
        Block::Para(format!("Yours sincerely,\n{}", practice.name)),
    ]);
    blocks
}

/// Both files, from the released items (CPU-bound; run off the async runtime).
fn render_files(
    practice: &Practice,
    review: &SarReview,
    today: NaiveDate,
    progress: &ProgressFn,
) -> AppResult<SarFiles> {
    let released: Vec<&SarItem> = review.items.iter().filter(|i| !review.is_withheld(&i.key)).collect();
    let mut withheld: BTreeMap<String, usize> = BTreeMap::new();
    for i in &review.items {
        if let Some(d) = review.decisions.get(&i.key).filter(|d| d.decision == "withhold") {
            *withheld.entry(d.ground.clone().unwrap_or_else(|| "other_exemption".into())).or_insert(0) += 1;
        }
    }
    let p = &review.patient;
    let name = format!("{} {}", p.name.given, p.name.family);
    // The PDF.
    let mut blocks = cover_letter(practice, review, today, &withheld);
    blocks.push(Block::PageBreak);
    blocks.push(Block::Heading(1, format!("Records held about {name}")));
    blocks.push(Block::Para(format!(
        "NHS number {}. Born {}. {} items.",
        p.nhs_number,
        long_date(p.date_of_birth),
        released.len()
    )));
    for section in ItemSection::ALL {
        let mine: Vec<&&SarItem> = released.iter().filter(|i| i.section == section).collect();
        if mine.is_empty() {
            continue;
        }
        blocks.push(Block::Heading(2, format!("{} ({})", section.display(), mine.len())));
        for i in mine {
            blocks.push(Block::Item { title: i.title.clone(), lines: i.lines.clone() });
        }
    }
    let mut letterhead = vec![practice.name.clone()];
    letterhead.extend(practice.address.lines.iter().cloned());
    letterhead.push(practice.address.postcode.clone());
    letterhead.push(format!("Telephone {}", practice.telephone));
    letterhead.push(format!("ODS code {}", practice.ods_code.as_str()));
    let doc = PdfDocument {
        title: format!("Subject access request: records of {name}"),
        author: practice.name.clone(),
        letterhead,
        running_header: format!("{name}, NHS number {}: subject access response from {}", p.nhs_number, practice.name),
        blocks,
    };
    let pdf = caldicott_pdf::render(&doc, |page, pages| {
        progress(ExportProgress { stage: "Writing the PDF".into(), done: page, total: pages });
    })
    .map_err(|e| AppError::Internal(e.to_string()))?;
    // The FHIR Bundle, from the same items.
    progress(ExportProgress { stage: "Writing the FHIR Bundle".into(), done: 0, total: released.len() });
    // Written as it goes, each resource already serialised: the Bundle is never held twice.
    let stamp = instant(today.and_time(chrono::NaiveTime::MIN).and_utc());
    let head = json!({
        "resourceType": "Bundle",
        "id": review.sar.id.to_string(),
        "meta": { "lastUpdated": stamp },
        "identifier": { "system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", review.sar.id) },
        "type": "collection",
        "timestamp": stamp,
    })
    .to_string();
    let mut bundle: Vec<u8> =
        Vec::with_capacity(released.iter().map(|i| i.resource.len() + 64).sum::<usize>() + head.len() + 4096);
    bundle.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    bundle.extend_from_slice(b",\"entry\":[");
    let mut entry = |full_url: Option<String>, resource: &str| {
        if bundle.last() != Some(&b'[') {
            bundle.push(b',');
        }
        bundle.push(b'{');
        if let Some(u) = full_url {
            bundle.extend_from_slice(format!("\"fullUrl\":\"{u}\",").as_bytes());
        }
        bundle.extend_from_slice(b"\"resource\":");
        bundle.extend_from_slice(resource.as_bytes());
        bundle.push(b'}');
    };
    entry(Some(format!("urn:uuid:{}", p.id)), &fhir::patient_resource(p, practice).to_string());
    entry(Some(format!("urn:uuid:{}", practice.id)), &fhir::organization_resource(practice).to_string());
    for (n, i) in released.iter().enumerate() {
        let id = i.key.split_once('/').map_or("", |(_, id)| id);
        entry(Uuid::parse_str(id).ok().map(|u| format!("urn:uuid:{u}")), &i.resource);
        if n % 1000 == 0 {
            progress(ExportProgress { stage: "Writing the FHIR Bundle".into(), done: n, total: released.len() });
        }
    }
    bundle.extend_from_slice(b"]}\n");
    Ok(SarFiles {
        pdf_sha256: sha256_hex(&pdf),
        bundle_sha256: sha256_hex(&bundle),
        pdf,
        bundle,
        released: released.len(),
        withheld: withheld.values().sum(),
        file_stem: format!("sar-{}-{}", p.nhs_number.as_str(), today),
    })
}

/// How long an export's files wait to be collected.
pub const EXPORT_KEEP: chrono::Duration = chrono::Duration::minutes(15);
/// How often the server making an export says it is still at it.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);
/// A running export whose heartbeat is older than this lost its server.
const HEARTBEAT_LOST: chrono::Duration = chrono::Duration::minutes(2);

/// An export as the member of staff sees it.
#[derive(Debug, Clone)]
pub struct ExportJobView {
    pub job: ExportJob,
    pub running: bool,
    /// Why it failed, in words for the member of staff.
    pub failure: Option<String>,
}

impl App {
    /// Starts making a request's export files on this server and returns the export's id. The
    /// progress, the files and the outcome are kept in the database, so any server answers for
    /// it (`sar_export_job`, `collect_sar_export_file`).
    pub async fn start_sar_export(&self, who: &StaffPrincipal, sar: Uuid) -> AppResult<Uuid> {
        permit(who, Permission::HandleSubjectAccessRequests)?;
        permit(who, Permission::ReleaseSubjectAccessExports)?;
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        self.store.drop_export_jobs_before(who.practice, now - EXPORT_KEEP).await?;
        let job = ExportJob::begun(new_id(), sar, who.staff, now);
        self.store.create_export_job(who.practice, &job).await?;
        let (app, who, id) = (self.clone(), who.clone(), job.id);
        tokio::spawn(async move {
            let (tx, mut rx) =
                tokio::sync::watch::channel(ExportProgress { stage: "Starting".into(), done: 0, total: 0 });
            // Progress is written as it comes (the latest only), and the heartbeat beaten
            // meanwhile, until the export is over.
            let writer = {
                let app = app.clone();
                let practice = who.practice;
                tokio::spawn(async move {
                    loop {
                        let over = tokio::select! {
                            changed = rx.changed() => changed.is_err(),
                            () = tokio::time::sleep(HEARTBEAT) => false,
                        };
                        if over {
                            return;
                        }
                        let p = rx.borrow_and_update().clone();
                        let (done, total) = (i64::try_from(p.done).unwrap_or(0), i64::try_from(p.total).unwrap_or(0));
                        if let Err(e) = app.store.export_progress(practice, id, &p.stage, done, total, app.now()).await
                        {
                            tracing::warn!(error = %e, "recording an export's progress");
                        }
                    }
                })
            };
            let progress: ProgressFn = Arc::new(move |p: ExportProgress| {
                tx.send_replace(p);
            });
            let outcome = app.export_sar(&who, sar, progress).await;
            let _ = writer.await;
            let finished = match &outcome {
                Ok(f) => app.store.finish_export_job(
                    who.practice,
                    id,
                    Ok(ExportFiles {
                        file_stem: &f.file_stem,
                        released: i64::try_from(f.released).unwrap_or(i64::MAX),
                        withheld: i64::try_from(f.withheld).unwrap_or(i64::MAX),
                        pdf: &f.pdf,
                        pdf_sha256: &f.pdf_sha256,
                        bundle: &f.bundle,
                        bundle_sha256: &f.bundle_sha256,
                    }),
                    app.now(),
                ),
                Err(AppError::Conflict(m) | AppError::Forbidden(m) | AppError::NotFound(m)) => {
                    app.store.finish_export_job(who.practice, id, Err(m.as_str()), app.now())
                }
                Err(other) => {
                    tracing::error!(error = %other, "subject access export failed");
                    app.store.finish_export_job(
                        who.practice,
                        id,
                        Err("The export could not be made; nothing was released. Try again, or tell the system \
                             administrator."),
                        app.now(),
                    )
                }
            }
            .await;
            if let Err(e) = finished {
                tracing::error!(error = %e, "recording how a subject access export ended");
            }
        });
        Ok(job.id)
    }

    /// Drops every practice's exports begun more than [`EXPORT_KEEP`] ago, files and all, so that
    /// nothing of one outlives it in the database whether or not anyone looks again (`serve`
    /// calls this every minute). Returns how many went.
    pub async fn drop_expired_sar_exports(&self) -> AppResult<u64> {
        let before = self.now() - EXPORT_KEEP;
        let mut dropped = 0;
        for p in self.store.practices().await? {
            dropped += self.store.drop_export_jobs_before(p.id, before).await?;
        }
        Ok(dropped)
    }

    /// The export `job` of request `sar`, if it is this member of staff's and still kept.
    pub async fn sar_export_job(&self, who: &StaffPrincipal, sar: Uuid, job: Uuid) -> AppResult<ExportJobView> {
        permit(who, Permission::ReleaseSubjectAccessExports)?;
        let gone = || {
            AppError::NotFound(
                "This export has been collected or has expired. Make it again from the review page.".into(),
            )
        };
        let j = self.store.export_job(who.practice, job).await?.ok_or_else(gone)?;
        let now = self.now();
        if j.sar != sar || j.staff != who.staff || j.started_at < now - EXPORT_KEEP {
            return Err(gone());
        }
        let lost = !j.finished && j.heartbeat_at < now - HEARTBEAT_LOST;
        let failure = if lost {
            Some(
                "The server making this export stopped before it was finished; nothing was handed over. Make it \
                 again from the review page."
                    .to_owned(),
            )
        } else {
            j.failure.clone()
        };
        Ok(ExportJobView { running: !j.finished && !lost, failure, job: j })
    }

    /// Hands over one file of a finished export, once, to the member of staff who released it;
    /// audited in the same transaction. `None` when it has been collected or has expired.
    pub async fn collect_sar_export_file(
        &self,
        who: &StaffPrincipal,
        sar: Uuid,
        job: Uuid,
        which: ExportFile,
    ) -> AppResult<Option<(Vec<u8>, String, &'static str)>> {
        let view = match self.sar_export_job(who, sar, job).await {
            Ok(v) => v,
            Err(AppError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let (format, facts, ext, mime) = match which {
            ExportFile::Pdf => ("pdf", &view.job.pdf, "pdf", "application/pdf"),
            ExportFile::Bundle => ("fhir", &view.job.bundle, "fhir.json", "application/fhir+json"),
        };
        let (Some(facts), Some(stem)) = (facts, &view.job.file_stem) else { return Ok(None) };
        let (_, _, patient) = self.load_sar(who, sar).await?;
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::SarExport,
            format!("sar/{sar}"),
            Outcome::Success,
            format!("collected format={format} sha256={} bytes={}", facts.sha256, facts.bytes),
        );
        let taken = self.store.take_export_file(who.practice, job, who.staff, which, &audit).await?;
        Ok(taken.map(|bytes| (bytes, format!("{stem}.{ext}"), mime)))
    }
}
