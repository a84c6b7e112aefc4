//! Documents' files. Staff add a document (a scanned letter, a PDF, a photo) to a record; it
//! waits in the filing queue, hidden online, until a clinician files it visible or hidden (R8).
//! Staff open any document of their practice; a patient, a proxy or a linked app opens one only
//! when the document itself is shown to them online, and any other id answers exactly as an id
//! that does not exist. A document held without a file (older records, transfers that carried
//! only a summary) opens as its summary, as text. Every opening is audited.

use crate::patient_services::PatientPrincipal;
use crate::settings::FieldProblem;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, AuditRecord, Outcome};
use caldicott_core::entry::*;
use caldicott_core::ids::*;
use caldicott_core::visibility::Shown;
use caldicott_store::documents::{FileInfo, StoredFile};
use chrono::NaiveDate;
use serde_json::Value;
use sha1::{Digest, Sha1};

/// The largest file accepted (a scanned letter of a few pages is well under this).
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;

/// What may be stored, by what the file's first bytes show it to be: the name a browser gives
/// it decides nothing.
pub const ACCEPTED: [(&str, &str); 5] = [
    ("application/pdf", "PDF"),
    ("image/png", "PNG"),
    ("image/jpeg", "JPEG"),
    ("image/tiff", "TIFF"),
    ("text/plain; charset=utf-8", "plain text"),
];

/// The type a file's content shows it to be, if it is one of [`ACCEPTED`].
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Some("image/tiff")
    } else if !bytes.is_empty() && !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok() {
        Some("text/plain; charset=utf-8")
    } else {
        None
    }
}

/// A file checked and ready to store.
pub fn stored_file(filename: &str, content: Vec<u8>) -> Result<StoredFile, String> {
    if content.is_empty() {
        return Err("The file is empty".into());
    }
    if content.len() > MAX_FILE_BYTES {
        return Err(format!("The file is larger than {} MB", MAX_FILE_BYTES / 1024 / 1024));
    }
    let content_type = sniff(&content).ok_or_else(|| {
        let kinds: Vec<&str> = ACCEPTED.iter().map(|a| a.1).collect();
        format!("The file must be {}", kinds.join(", ").replacen(", plain text", " or plain text", 1))
    })?;
    // Only the last part of the name, without anything a download header could trip on.
    let name: String = filename
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | ';'))
        .take(120)
        .collect();
    let name = if name.trim().is_empty() { "document".to_owned() } else { name.trim().to_owned() };
    let sha1: [u8; 20] = Sha1::digest(&content).into();
    Ok(StoredFile {
        info: FileInfo { content_type: content_type.to_owned(), filename: name, size: content.len() as u64, sha1 },
        content,
    })
}

/// What staff fill in to add a document.
#[derive(Debug, Clone, Default)]
pub struct NewDocument {
    pub title: String,
    pub summary: String,
    /// The document's own date (a letter's), as typed.
    pub day: String,
    pub month: String,
    pub year: String,
    pub filename: String,
    pub content: Vec<u8>,
}

/// A document's content, to send.
#[derive(Debug, Clone)]
pub struct DocumentContent {
    pub entry: EntryId,
    pub content_type: String,
    pub filename: String,
    pub bytes: Vec<u8>,
}

impl DocumentContent {
    /// As a FHIR Binary, its access governed by the DocumentReference of the same id.
    pub fn resource(&self) -> Value {
        caldicott_fhir::write::binary_resource(self.entry, &self.content_type, &self.bytes)
    }
}

/// A document's content for an online viewer: only one the engine shows them.
fn shown_content(e: &Shown<Entry>, file: Option<StoredFile>) -> AppResult<DocumentContent> {
    content_of(e, file).ok_or_else(unknown_document)
}

pub(crate) fn content_of(e: &Entry, file: Option<StoredFile>) -> Option<DocumentContent> {
    let EntryBody::Document { title, summary, .. } = &e.body else { return None };
    Some(match file {
        Some(f) => DocumentContent {
            entry: e.id,
            content_type: f.info.content_type,
            filename: f.info.filename,
            bytes: f.content,
        },
        None => DocumentContent {
            entry: e.id,
            content_type: "text/plain; charset=utf-8".into(),
            filename: format!(
                "{}.txt",
                title.chars().filter(|c| c.is_alphanumeric() || *c == ' ').collect::<String>().trim()
            ),
            bytes: summary.clone().into_bytes(),
        },
    })
}

fn unknown_document() -> AppError {
    AppError::NotFound("there is no such document".into())
}

impl App {
    /// The patient a document is being added for (the practice team's).
    pub async fn document_form(&self, who: &StaffPrincipal, nhs: &str) -> AppResult<caldicott_core::patient::Patient> {
        who.require_team("administrators do not open patient records")?;
        self.patient_here(who, nhs).await
    }

    /// The new document form, which names the patient: audited as a look.
    pub async fn view_document_form(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
    ) -> AppResult<caldicott_core::patient::Patient> {
        let patient = self.document_form(who, nhs).await?;
        self.audit_look(
            who,
            Some(patient.id),
            Action::RecordFormView,
            format!("patient/{}", patient.id),
            "form=document",
        )
        .await?;
        Ok(patient)
    }

    /// Adds a document with its file to a patient's record: it waits in the filing queue,
    /// unseen online, until a clinician files it. Or says what is wrong (nothing is written).
    pub async fn add_document(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        d: NewDocument,
    ) -> AppResult<Result<EntryId, Vec<FieldProblem>>> {
        let patient = self.document_form(who, nhs).await?;
        let mut problems = Vec::new();
        let title = d.title.trim();
        if title.is_empty() || title.chars().count() > 200 {
            problems.push(FieldProblem {
                field: "title",
                message: "Enter what the document is (up to 200 characters)".into(),
            });
        }
        if d.summary.chars().count() > 2000 {
            problems
                .push(FieldProblem { field: "summary", message: "The summary is longer than 2,000 characters".into() });
        }
        let today = self.today();
        let date = match (d.day.trim().parse::<u32>(), d.month.trim().parse::<u32>(), d.year.trim().parse::<i32>()) {
            (Ok(day), Ok(m), Ok(y)) => NaiveDate::from_ymd_opt(y, m, day),
            _ => None,
        };
        match date {
            None => problems.push(FieldProblem {
                field: "date",
                message: "Enter the document's date, for example 14 3 2026".into(),
            }),
            Some(d) if d > today => problems.push(FieldProblem {
                field: "date",
                message: "The document's date must be today or in the past".into(),
            }),
            Some(d) if d < patient.date_of_birth - chrono::Duration::days(300) => problems.push(FieldProblem {
                field: "date",
                message: "The document's date is before the patient was born".into(),
            }),
            Some(_) => {}
        }
        let file = match stored_file(&d.filename, d.content) {
            Ok(f) => Some(f),
            Err(message) => {
                problems.push(FieldProblem { field: "file", message });
                None
            }
        };
        let (Some(file), Some(date), true) = (file, date, problems.is_empty()) else {
            return Ok(Err(problems));
        };
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let entry = Entry {
            id: EntryId::from_uuid(new_id()),
            patient: patient.id,
            event_date: date,
            entered_at: now,
            author: Author { staff: Some(who.staff), name: who.name.clone() },
            origin: Origin::Native,
            code: None,
            body: EntryBody::Document {
                title: title.to_owned(),
                summary: d.summary.trim().to_owned(),
                filing: Filing::Unfiled,
                review: DocumentReview::Unreviewed,
            },
            visibility: OnlineVisibility::Visible,
            nopat: false,
            safeguarding: false,
            confidential: false,
            superseded: None,
        };
        let audit = AuditRecord::new(
            AuditEventId::from_uuid(new_id()),
            now,
            who.actor(),
            Some(patient.id),
            Action::EntryCreate,
            format!("entry/{}", entry.id),
            Outcome::Success,
            format!("document {} {} bytes", file.info.content_type, file.info.size),
        );
        self.store.add_document(who.practice, &entry, &file, &audit).await?;
        Ok(Ok(entry.id))
    }

    /// A document of the practice's, for staff: any of them, hidden online or not.
    pub async fn staff_document(&self, who: &StaffPrincipal, entry: EntryId) -> AppResult<DocumentContent> {
        who.require_team("administrators do not open patient records")?;
        let e = self.store.entry(who.practice, entry).await?.ok_or_else(unknown_document)?;
        let file = self.store.document_file(who.practice, entry).await?;
        let content = content_of(&e, file).ok_or_else(unknown_document)?;
        self.audit_look(
            who,
            Some(e.patient),
            Action::RecordViewStaff,
            format!("document/{entry}"),
            format!("{} bytes", content.bytes.len()),
        )
        .await?;
        Ok(content)
    }

    /// A document for the signed-in patient or proxy: only one shown to them online.
    pub async fn my_document(
        &self,
        me: &PatientPrincipal,
        link: Option<ProxyLinkId>,
        entry: EntryId,
    ) -> AppResult<DocumentContent> {
        let link = match link {
            Some(id) => Some(self.my_link(me, id).await.map_err(|_| unknown_document())?),
            None => None,
        };
        let target = link.as_ref().map_or(me.holder, |l| l.patient);
        let view = self.outside_view(me.practice, target, link, Some(me.identity), unknown_document).await?;
        let shown = view
            .entry(self, entry)
            .await?
            .map(|e| e.filter(|e| e.kind() == EntryKind::Document))
            .ok_or_else(unknown_document)?;
        let file = self.store.document_file(me.practice, entry).await?;
        shown
            .map(|e| shown_content(&e, file))
            .transpose()?
            .audited(self, me.practice, |content| {
                self.patient_audit(
                    me.actor(view.link.as_ref()),
                    Some(target),
                    Action::RecordViewOnline,
                    format!("document/{entry}"),
                    Outcome::Success,
                    format!("{} bytes", content.bytes.len()),
                )
            })
            .await
    }
}
