//! How the things several pages show are shown: dates, the patient banner, a record entry's row,
//! section names and links, the viewer's online access in words, the reasons an entry can be
//! hidden, the redaction assistant's findings, contact methods, repeat decisions and a subject
//! access request's period.

use caldicott_app::record::AccessSummary;
use caldicott_core::entry::{Entry, EntryBody, Section};
use caldicott_core::patient::{age_on, Patient, PreferredContactMethod, Sex};
use caldicott_core::tasks::ItemDecision;
use caldicott_core::visibility::GrantSource;
use chrono::{Datelike, NaiveDate};

pub(crate) fn long_date(d: NaiveDate) -> String {
    d.format("%-d %b %Y").to_string()
}

pub(crate) fn age_text(dob: NaiveDate, today: NaiveDate) -> String {
    let years = age_on(dob, today);
    if years >= 2 {
        format!("{years} years")
    } else {
        let months = (today - dob).num_days() / 30;
        format!("{months} months")
    }
}

pub struct Flag {
    pub text: String,
    pub colour: &'static str,
}

pub(crate) struct Banner {
    pub name: String,
    pub nhs_number: String,
    pub nhs_digits: String,
    pub date_of_birth: String,
    pub age: String,
    pub sex: &'static str,
    pub flags: Vec<Flag>,
}

pub(crate) fn banner(p: &Patient, today: NaiveDate, enhanced_review_active: bool) -> Banner {
    let mut flags = Vec::new();
    if let Some(d) = p.date_of_death {
        flags.push(Flag { text: format!("Died {}", long_date(d)), colour: "grey" });
    }
    if p.registration_on(today).is_none() {
        flags.push(Flag { text: "Not registered at this practice".into(), colour: "grey" });
    }
    if enhanced_review_active {
        flags.push(Flag { text: "Online access withheld: enhanced review (104)".into(), colour: "red" });
    }
    Banner {
        name: p.name.banner(),
        nhs_number: p.nhs_number.to_string(),
        nhs_digits: p.nhs_number.as_str().to_owned(),
        date_of_birth: long_date(p.date_of_birth),
        age: age_text(p.date_of_birth, today),
        sex: match p.sex {
            Sex::Female => "Female",
            Sex::Male => "Male",
            Sex::Other => "Other",
            Sex::Unknown => "Not known",
        },
        flags,
    }
}

/// The viewer's access in plain words.
pub(crate) fn access_text(a: &AccessSummary) -> String {
    if let Some(r) = &a.no_record_access {
        return format!("Sees no record entries online: {}.", r.reason);
    }
    // Highest level first; a lower level is mentioned only where it reaches further back.
    let mut shown: Vec<&caldicott_core::visibility::LevelReach> = Vec::new();
    for l in a.levels.iter().rev().filter(|l| l.level != caldicott_core::access::AccessLevel::None) {
        if shown.last().is_none_or(|h| (h.from, h.by) != (l.from, l.by)) {
            shown.push(l);
        }
    }
    let parts: Vec<String> = shown
        .iter()
        .map(|l| {
            let from = l.from.map_or("the whole record".to_owned(), |d| format!("entries from {}", long_date(d)));
            let how = match l.by {
                GrantSource::Automatic => "automatic access",
                GrantSource::Manual => "granted by the practice",
                GrantSource::Proxy => "this proxy's access",
            };
            format!("{}: {from} ({how})", l.level.display())
        })
        .collect();
    let mut text = format!("Sees {}.", parts.join("; "));
    if let Some((level, on)) = a.own_level {
        text.push_str(&format!(
            " The practice set the patient's own level to {} on {}; it replaces automatic access.",
            level.display(),
            long_date(on)
        ));
    } else if let Err(b) = &a.automatic {
        text.push_str(&format!(" No automatic access: {}.", b.reason));
    }
    text
}

pub struct ChangeLink {
    pub href: String,
    pub label: &'static str,
}

pub struct EntryRow {
    pub change: Option<ChangeLink>,
    pub date: String,
    pub kind: &'static str,
    pub code: Option<String>,
    pub text: String,
    pub author: String,
    pub online: &'static str,
    pub online_colour: &'static str,
    /// Why the viewer does not see it, in words, and the rule's number (for the tooltip; the
    /// audit keeps it too).
    pub withheld: Option<(String, String)>,
    /// Retired by a later version (R28): what replaced it. Kept for audit, not current.
    pub superseded: Option<String>,
    /// Where its document opens (documents only).
    pub document: Option<String>,
}

pub(crate) fn kind_label(e: &Entry) -> &'static str {
    match &e.body {
        EntryBody::Coded { .. } => "Coded entry",
        EntryBody::Consultation { status, .. } => match status {
            caldicott_core::entry::ConsultationStatus::Draft => "Consultation (draft)",
            caldicott_core::entry::ConsultationStatus::Final => "Consultation",
        },
        EntryBody::Medication { course, .. } => match course {
            caldicott_core::entry::MedicationCourse::Acute => "Medication (acute)",
            caldicott_core::entry::MedicationCourse::RepeatTemplate => "Repeat medication",
        },
        EntryBody::MedicationIssue { .. } => "Medication issued",
        EntryBody::TestResult { filing, .. } => match filing {
            caldicott_core::entry::Filing::Unfiled => "Test result (unfiled)",
            caldicott_core::entry::Filing::Filed => "Test result",
        },
        EntryBody::Document { review, .. } => match review {
            caldicott_core::entry::DocumentReview::Unreviewed => "Document (not reviewed)",
            caldicott_core::entry::DocumentReview::Reviewed => "Document",
        },
        EntryBody::Allergy { .. } => "Allergy",
        EntryBody::Immunisation { .. } => "Immunisation",
        EntryBody::Problem { .. } => "Problem",
        EntryBody::AdminMessage { .. } => "Administrative message",
        EntryBody::OnlineConsultation { .. } => "Online consultation",
        EntryBody::SystemSms { .. } => "Text message sent",
        EntryBody::Diary { .. } => "Diary entry",
        EntryBody::CarePlan { .. } => "Care plan",
        EntryBody::CarePlanPart { .. } if e.origin == caldicott_core::entry::Origin::PatientEntered => {
            "Care plan (added by the patient)"
        }
        EntryBody::CarePlanPart { .. } => "Care plan",
    }
}

pub(crate) fn entry_text(e: &Entry) -> String {
    match &e.body {
        EntryBody::Consultation { text, .. } => text.clone(),
        other => other.headline(),
    }
}

pub(crate) fn entry_row(e: &Entry, online: Option<&caldicott_app::record::OnlineStatus>) -> EntryRow {
    let (label, colour, withheld) = match online {
        None => ("", "grey", None),
        Some(s) if s.visible => ("Visible", "green", None),
        Some(s) => ("Withheld", "grey", s.withheld.as_ref().map(|r| (r.reason.to_string(), r.rule.to_string()))),
    };
    EntryRow {
        change: None,
        date: long_date(e.event_date),
        kind: kind_label(e),
        code: e.code.as_ref().map(|c| format!("{} ({})", c.term, c.concept)),
        text: entry_text(e),
        author: match &e.origin {
            caldicott_core::entry::Origin::Native => e.author.name.clone(),
            caldicott_core::entry::Origin::PatientEntered => format!("{} · entered online", e.author.name),
            caldicott_core::entry::Origin::TransferredIn { from_ods } => {
                format!("{} · transferred in from {from_ods}", e.author.name)
            }
            caldicott_core::entry::Origin::Inbound { sender_ods } => {
                format!("{} · sent by {sender_ods}", e.author.name)
            }
        },
        online: label,
        online_colour: colour,
        withheld,
        superseded: e.superseded.as_ref().map(|x| x.note.clone()),
        document: staff_href(e),
    }
}

/// Where a record entry's document opens, for staff (`None`: not a document).
pub(crate) fn staff_href(e: &caldicott_core::entry::Entry) -> Option<String> {
    (e.kind() == caldicott_core::entry::EntryKind::Document).then(|| format!("/documents/{}", e.id))
}

pub struct SectionLink {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

pub(crate) fn section_label(s: Option<Section>) -> &'static str {
    match s {
        None => "All entries",
        Some(Section::Consultations) => "Consultations",
        Some(Section::Problems) => "Problems",
        Some(Section::Medications) => "Medications",
        Some(Section::Results) => "Results",
        Some(Section::Documents) => "Documents",
        Some(Section::Allergies) => "Allergies",
        Some(Section::Immunisations) => "Immunisations",
        Some(Section::Codes) => "Codes",
        Some(Section::Communications) => "Communications",
        Some(Section::CarePlans) => "Care plans",
    }
}

/// A date from NHS.UK's three boxes (day, month, year; `forms::date_input`): `Ok(None)` when all
/// three are empty, otherwise the date, or what is wrong, in words that start with `label`.
pub(crate) fn date_boxes(label: &str, day: &str, month: &str, year: &str) -> Result<Option<NaiveDate>, String> {
    caldicott_app::governance::parse_date_parts(day, month, year).map_err(|e| format!("{label} {e}"))
}

/// What the three boxes of a date show when its form is shown again (empty for no date).
pub(crate) fn date_box_values(d: Option<NaiveDate>) -> [String; 3] {
    d.map_or_else(Default::default, |d| [d.day().to_string(), d.month().to_string(), d.year().to_string()])
}

/// A date from its three boxes as an ISO date for a use case that reads one ("" for none), or
/// what is wrong, in words that start with `label`.
pub(crate) fn iso_from_boxes(label: &str, day: &str, month: &str, year: &str) -> Result<String, String> {
    Ok(date_boxes(label, day, month, year)?.map(|d| d.to_string()).unwrap_or_default())
}

/// The three boxes (day, month, year) of an ISO date a form shows again; a date that does not
/// read shows empty.
pub(crate) fn boxes_of_iso(iso: &str) -> [String; 3] {
    date_box_values(NaiveDate::parse_from_str(iso.trim(), "%Y-%m-%d").ok())
}

/// An NHS number as the NHS writes it, 3-3-4 digits with spaces ("999 123 4567"), whichever way
/// it was stored; anything that is not ten digits (as a pharmacy sent it) is shown as it is.
/// Templates put it in `<span class="app-nowrap">` so that it never breaks over two lines.
pub(crate) fn nhs(n: impl std::fmt::Display) -> String {
    let n = n.to_string();
    let digits: String = n.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() == 10 && digits.chars().all(|c| c.is_ascii_digit()) {
        format!("{} {} {}", &digits[..3], &digits[3..6], &digits[6..])
    } else {
        n
    }
}

/// A count with its noun, singular for one: "1 entry", "3 entries". Templates call it as
/// `crate::kernel::count(n, "entry", "entries")`.
pub(crate) fn count(n: impl std::fmt::Display, one: &str, many: &str) -> String {
    let n = n.to_string();
    if n == "1" {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

pub(crate) fn with_param(base: &str, query: &str, key: &str, value: &str) -> String {
    let sep = if query.is_empty() { "?" } else { "&" };
    format!("{base}{query}{sep}{key}={value}")
}

pub(crate) const REASONS: [caldicott_core::entry::HiddenReason; 4] = [
    caldicott_core::entry::HiddenReason::ThirdParty,
    caldicott_core::entry::HiddenReason::PotentiallyHarmful,
    caldicott_core::entry::HiddenReason::Safeguarding,
    caldicott_core::entry::HiddenReason::Other,
];

/// The redaction assistant's findings as a form shows them, with who will see the entry.
pub struct CheckView {
    pub highlights: Vec<String>,
    pub onlookers: Vec<(String, String)>,
}

impl From<caldicott_app::entry_check::EntryCheck> for CheckView {
    fn from(c: caldicott_app::entry_check::EntryCheck) -> Self {
        Self {
            highlights: c.highlights,
            onlookers: c
                .onlookers
                .into_iter()
                .map(|o| {
                    let what = match o.not_shown {
                        None => "will see it online as soon as it is saved".to_owned(),
                        Some(why) => format!("will not see it ({why})"),
                    };
                    (o.who, what)
                })
                .collect(),
        }
    }
}

pub(crate) fn qr_svg(uri: &str) -> String {
    qrcode::QrCode::new(uri.as_bytes())
        .map(|q| q.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build())
        .unwrap_or_default()
}

pub(crate) fn method_label(m: PreferredContactMethod) -> &'static str {
    match m {
        PreferredContactMethod::Letter => "letter",
        PreferredContactMethod::Visit => "visit",
        PreferredContactMethod::Telephone => "telephone",
        PreferredContactMethod::Email => "email",
        PreferredContactMethod::Minicom => "minicom (textphone)",
        PreferredContactMethod::TelephoneViaProxy => "telephone via a proxy",
        PreferredContactMethod::SignLanguage => "sign language",
        PreferredContactMethod::NoTelephone => "no telephone",
        PreferredContactMethod::Sms => "text message",
        PreferredContactMethod::Unknown => "not recorded",
    }
}

/// The choices of the preferred-contact form: (value, label), UK Core codes 1–9 and "unknown".
pub(crate) fn method_choices() -> Vec<(String, &'static str)> {
    PreferredContactMethod::ALL
        .into_iter()
        .map(|m| (m.code().map_or("unknown".to_owned(), |c| c.to_string()), method_label(m)))
        .collect()
}

/// One medicine of an order, in words; `open` is whether the order is still open (an undecided
/// medicine of a closed order was cancelled with it, before anything was decided).
pub(crate) fn decision_text(d: &ItemDecision, open: bool) -> String {
    match d {
        ItemDecision::Pending if !open => "Cancelled".into(),
        ItemDecision::Pending => "Waiting for a clinician".into(),
        ItemDecision::Approved { by, at } => {
            format!("Approved by {by} on {}", caldicott_core::appointments::uk_time(*at).format("%-d %b %Y"))
        }
        ItemDecision::Rejected { reason, by, at } => {
            format!(
                "Not approved by {by} on {}: {reason}",
                caldicott_core::appointments::uk_time(*at).format("%-d %b %Y")
            )
        }
    }
}

/// For the request page: the period in words.
pub(crate) fn period_words(from: Option<chrono::NaiveDate>, to: Option<chrono::NaiveDate>) -> String {
    match (from, to) {
        (None, None) => "Everything held".into(),
        (Some(f), None) => format!("From {}", long_date(f)),
        (None, Some(t)) => format!("Up to {}", long_date(t)),
        (Some(f), Some(t)) => format!("{} to {}", long_date(f), long_date(t)),
    }
}

/// Whose record a printed page is, and when and where it was printed.
pub struct PrintedFacts {
    pub name: String,
    pub nhs_number: String,
    pub born: String,
    pub practice: String,
    pub printed: String,
}

pub(crate) fn printed_facts(
    app: &caldicott_app::App,
    me: &caldicott_app::patient_services::PatientSignedIn,
    h: &caldicott_app::patient_services::RecordHolder,
) -> PrintedFacts {
    PrintedFacts {
        name: h.name.clone(),
        nhs_number: h.nhs_number.clone(),
        born: long_date(h.birth_date),
        practice: me.practice_name.clone(),
        printed: caldicott_core::appointments::uk_time(app.now()).format("%-d %b %Y %H:%M").to_string(),
    }
}

/// The person a patient page is for: `?for=<proxy link>`, or the signed-in person themselves.
pub(crate) fn link_of(v: Option<&String>) -> Result<Option<caldicott_core::ids::ProxyLinkId>, caldicott_app::AppError> {
    match v.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| caldicott_app::AppError::NotFound("no such person".into())),
    }
}

pub(crate) fn for_query(link: Option<caldicott_core::ids::ProxyLinkId>) -> String {
    link.map(|l| format!("?for={l}")).unwrap_or_default()
}
