//! Governance of online access: the enhanced-review redaction assistant, bulk 104/106 cohorts,
//! and the exclusion figures NHS England asks for (R35–R37).

use crate::entry::{Entry, EntryBody, Filing, OnlineVisibility};
use crate::nhs_number::NhsNumber;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;

// ---- Exclusion figures (R36) -------------------------------------------------------------

/// A practice's exclusion figures on a day: registered patients aged 16 or over, and how many
/// of them have an active 104.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExclusionFigures {
    pub registered_16_plus: i64,
    pub active_104: i64,
}

impl ExclusionFigures {
    /// The share excluded, in tenths of a percent (rounded half up), so that 50.0% prints exactly.
    pub fn per_mille(self) -> i64 {
        if self.registered_16_plus <= 0 {
            return 0;
        }
        (self.active_104 * 2000 + self.registered_16_plus) / (self.registered_16_plus * 2)
    }
    /// "37.5%".
    pub fn percent_text(self) -> String {
        let m = self.per_mille();
        format!("{}.{}%", m / 10, m % 10)
    }
    /// More than half excluded: NHS England requires an action plan (R36). Exactly half is not
    /// "more than 50%".
    pub fn needs_action_plan(self) -> bool {
        self.registered_16_plus > 0 && self.active_104 * 2 > self.registered_16_plus
    }
}

/// The day someone born on or before it is 16 or over on `today`.
pub fn born_on_or_before_for_16_plus(today: NaiveDate) -> NaiveDate {
    // Someone turns 16 on their 16th birthday; born 29 February turns 16 on 1 March.
    let y = today.year() - 16;
    NaiveDate::from_ymd_opt(y, today.month(), today.day())
        .or_else(|| NaiveDate::from_ymd_opt(y, 2, 28))
        .unwrap_or(NaiveDate::MIN)
}

// ---- Bulk 104/106 (R35) --------------------------------------------------------------------

/// What NHS England says against applying 104 in bulk: shown before every bulk 104 (R35).
pub const BULK_104_WARNINGS: [&str; 4] = [
    "NHS England advises against applying 104 in bulk: it is not an individual assessment of risk.",
    "Every patient coded will need an individual review before they can have access, which creates workload.",
    "The code travels with the record when the patient moves practice, and falsely tells the next practice there is a risk.",
    "Patients with online access can see the code in their record.",
];

/// Which patients a bulk change is for. Every given criterion must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cohort {
    /// Age in whole years on the day of the change, inclusive.
    pub min_age: Option<u32>,
    pub max_age: Option<u32>,
    /// Patients with this SNOMED CT concept anywhere in their record.
    pub has_code: Option<String>,
    /// Current registration started on or after / on or before.
    pub registered_from: Option<NaiveDate>,
    pub registered_to: Option<NaiveDate>,
    /// Only these patients (from a CSV of NHS numbers).
    pub nhs_numbers: Option<Vec<NhsNumber>>,
}

impl Cohort {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
    /// A plain description, for the audit trail and the job list. No patient identifiers.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match (self.min_age, self.max_age) {
            (Some(a), Some(b)) => parts.push(format!("aged {a} to {b}")),
            (Some(a), None) => parts.push(format!("aged {a} or over")),
            (None, Some(b)) => parts.push(format!("aged {b} or under")),
            (None, None) => {}
        }
        if let Some(c) = &self.has_code {
            parts.push(format!("with code {c}"));
        }
        match (self.registered_from, self.registered_to) {
            (Some(a), Some(b)) => parts.push(format!("registered {a} to {b}")),
            (Some(a), None) => parts.push(format!("registered on or after {a}")),
            (None, Some(b)) => parts.push(format!("registered on or before {b}")),
            (None, None) => {}
        }
        if let Some(n) = &self.nhs_numbers {
            parts.push(format!("in a list of {} NHS numbers", n.len()));
        }
        if parts.is_empty() {
            "every registered patient".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A problem with one line of a CSV of NHS numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CsvProblem {
    pub line: usize,
    pub message: String,
}

/// The most lines a CSV of NHS numbers may have.
pub const MAX_CSV_LINES: usize = 200_000;

/// Reads NHS numbers from the first column of a CSV: a header line is allowed, blank lines are
/// skipped, spaces inside a number are allowed, duplicates count once. Every bad line is named.
pub fn parse_nhs_number_csv(text: &str) -> Result<Vec<NhsNumber>, Vec<CsvProblem>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line_no > MAX_CSV_LINES {
            problems
                .push(CsvProblem { line: line_no, message: format!("the file has more than {MAX_CSV_LINES} lines") });
            break;
        }
        let first = line.split(',').next().unwrap_or("").trim().trim_matches('"').trim();
        if first.is_empty() {
            continue;
        }
        if line_no == 1 && !first.chars().any(|c| c.is_ascii_digit()) {
            continue; // a header
        }
        match NhsNumber::parse(first) {
            Ok(n) => {
                if seen.insert(n.as_str().to_owned()) {
                    out.push(n);
                }
            }
            Err(e) => problems.push(CsvProblem { line: line_no, message: format!("\"{first}\": {e}") }),
        }
    }
    if problems.is_empty() {
        if out.is_empty() {
            return Err(vec![CsvProblem { line: 0, message: "the file has no NHS numbers".into() }]);
        }
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Whether the number typed to confirm a bulk change is the number of patients it changes
/// (R35). Spaces and thousands separators are allowed; nothing is confirmed for no patients.
pub fn confirmation_matches(typed: &str, count: usize) -> bool {
    let digits: String = typed.chars().filter(|c| !c.is_whitespace() && *c != ',').collect();
    count > 0 && !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && digits.parse() == Ok(count)
}

// ---- Review outcomes and the trend ---------------------------------------------------------

/// How an enhanced review ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewOutcome {
    /// Access granted: 106 recorded, access follows the rules.
    Granted,
    /// Access withheld, with a reason and a date to review again.
    Withheld,
}

impl ReviewOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Withheld => "withheld",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "granted" => Some(Self::Granted),
            "withheld" => Some(Self::Withheld),
            _ => None,
        }
    }
}

/// The longest a withheld review may wait before it is looked at again.
pub const MAX_REVIEW_INTERVAL_DAYS: i64 = 731;

/// One month of the exclusion trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrendMonth {
    /// The first day of the month.
    pub month: NaiveDate,
    /// 104 codes recorded.
    pub excluded: i64,
    /// Reviews that granted access.
    pub granted: i64,
    /// Reviews that withheld access.
    pub withheld: i64,
}

/// What a trend month counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrendEvent {
    Excluded,
    Granted,
    Withheld,
}

/// The first day of the month `months_back` months before `today`'s month.
pub fn month_start(today: NaiveDate, months_back: u32) -> NaiveDate {
    let total = today.year() * 12 + today.month0() as i32 - months_back as i32;
    NaiveDate::from_ymd_opt(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1).unwrap_or(NaiveDate::MIN)
}

/// Buckets events into the `months` calendar months ending with `today`'s, oldest first; every
/// month is present, with zeros where nothing happened.
pub fn trend(
    today: NaiveDate,
    months: u32,
    events: impl IntoIterator<Item = (NaiveDate, TrendEvent)>,
) -> Vec<TrendMonth> {
    let mut out: Vec<TrendMonth> = (0..months)
        .rev()
        .map(|back| TrendMonth { month: month_start(today, back), excluded: 0, granted: 0, withheld: 0 })
        .collect();
    for (day, kind) in events {
        let m = month_start(day, 0);
        if let Some(slot) = out.iter_mut().find(|t| t.month == m) {
            match kind {
                TrendEvent::Excluded => slot.excluded += 1,
                TrendEvent::Granted => slot.granted += 1,
                TrendEvent::Withheld => slot.withheld += 1,
            }
        }
    }
    out
}

// ---- The redaction assistant ---------------------------------------------------------------

/// The bundled list of sensitive codes (docs/governance.md says where each comes from).
const SENSITIVE_CODES_CSV: &str = include_str!("../data/sensitive-codes.csv");

/// (concept id, category, term) of every code on the bundled sensitive list.
pub fn sensitive_codes() -> Vec<(&'static str, &'static str, &'static str)> {
    SENSITIVE_CODES_CSV
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cells = l.splitn(4, ',');
            Some((cells.next()?, cells.next()?, cells.next()?))
        })
        .collect()
}

/// Words and phrases that mark sensitive subjects, by category, matched in terms and free text.
pub const SENSITIVE_PHRASES: &[(&str, &[&str])] = &[
    (
        "safeguarding",
        &["safeguarding", "child protection", "social services", "social worker", "marac", "looked after child"],
    ),
    (
        "domestic abuse",
        &["domestic abuse", "domestic violence", "controlling", "coercive", "aggressive at home", "bruising"],
    ),
    ("sexual health", &["sexually transmitted", "chlamydia", "gonorrhoea", "syphilis", "hiv", "genitourinary"]),
    (
        "pregnancy and fertility",
        &["termination of pregnancy", "miscarriage", "ivf", "assisted fertilisation", "fertility treatment"],
    ),
    ("gender identity", &["gender dysphoria", "gender reassignment", "gender identity"]),
    ("mental health", &["self-harm", "self harm", "overdose", "suicid", "sectioned", "mental health act", "psychosis"]),
    ("substance use", &["alcohol misuse", "drug misuse", "substance misuse", "heroin", "cocaine"]),
    (
        "news not yet given",
        &[
            "not yet discussed",
            "not discussed with",
            "suspicious for malignancy",
            "awaiting discussion",
            "before telling",
        ],
    ),
];

/// Words that name another person's relationship to the patient.
const RELATIONSHIP_WORDS: &[&str] = &[
    "mother",
    "father",
    "mum",
    "dad",
    "parent",
    "partner",
    "ex-partner",
    "husband",
    "wife",
    "son",
    "daughter",
    "brother",
    "sister",
    "sibling",
    "grandmother",
    "grandfather",
    "uncle",
    "aunt",
    "cousin",
    "stepfather",
    "stepmother",
    "boyfriend",
    "girlfriend",
    "neighbour",
    "friend",
    "carer",
];

/// Titles that come before another person's name.
const TITLES: &[&str] = &["mr", "mrs", "ms", "miss", "mx"];

/// Why the assistant points at an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Highlight {
    /// The entry's code is on the bundled sensitive list.
    SensitiveCode { category: String, term: String },
    /// The entry is marked safeguarding or confidential.
    Flagged { flag: String },
    /// Its words touch a sensitive subject.
    SensitiveWords { category: String, words: Vec<String> },
    /// Its free text names or refers to other people.
    NamesOtherPeople { words: Vec<String> },
    /// A letter or document that carries information from or about someone else.
    ThirdPartyDocument { words: Vec<String> },
    /// An abnormal result from the last 90 days that may not have been discussed yet.
    RecentAbnormalResult { unfiled: bool },
}

impl Highlight {
    /// One line for the reviewer.
    pub fn explain(&self) -> String {
        match self {
            Self::SensitiveCode { category, term } => format!("Sensitive code ({category}): {term}"),
            Self::Flagged { flag } => format!("Marked {flag}"),
            Self::SensitiveWords { category, words } => format!("Mentions {category}: {}", words.join(", ")),
            Self::NamesOtherPeople { words } => format!("Names or refers to other people: {}", words.join(", ")),
            Self::ThirdPartyDocument { words } => {
                format!("Letter or document with third-party information: {}", words.join(", "))
            }
            Self::RecentAbnormalResult { unfiled: true } => {
                "Recent abnormal result, not yet filed by a clinician: check it has been discussed".into()
            }
            Self::RecentAbnormalResult { unfiled: false } => {
                "Recent abnormal result: check it has been discussed with the patient".into()
            }
        }
    }
}

/// How far back an abnormal result counts as recent.
pub const RECENT_RESULT_DAYS: i64 = 90;

/// The free text of an entry that the assistant reads.
fn texts(e: &Entry) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    if let Some(c) = &e.code {
        out.push(&c.term);
    }
    match &e.body {
        EntryBody::Coded { value } => out.extend(value.as_deref()),
        EntryBody::Consultation { text, .. }
        | EntryBody::OnlineConsultation { text }
        | EntryBody::SystemSms { text }
        | EntryBody::AdminMessage { text, .. } => out.push(text),
        EntryBody::Document { title, summary, .. } => {
            out.push(title);
            out.push(summary);
        }
        EntryBody::Problem { title, .. } => out.push(title),
        _ => {}
    }
    out
}

fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '\''))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_end_matches("'s").to_owned())
        .collect()
}

/// The phrases of a list found in a text (lower-cased, at word starts).
fn phrases_in(lower: &str, phrases: &[&str]) -> Vec<String> {
    phrases
        .iter()
        .filter(|p| lower.match_indices(*p).any(|(i, _)| i == 0 || !lower.as_bytes()[i - 1].is_ascii_alphanumeric()))
        .map(|p| (*p).to_owned())
        .collect()
}

/// What the assistant sees in one entry, for a reviewer deciding whether to hide it before
/// access is given. Entries already hidden online are left alone (nothing to decide).
pub fn assist(entry: &Entry, today: NaiveDate) -> Vec<Highlight> {
    let mut out = Vec::new();
    if matches!(entry.visibility, OnlineVisibility::Hidden(_)) || entry.nopat {
        return out;
    }
    if let Some(code) = &entry.code {
        if let Some((_, category, term)) =
            sensitive_codes().into_iter().find(|(id, cat, _)| *id == code.concept.as_str() && *cat != "online access")
        {
            out.push(Highlight::SensitiveCode { category: category.into(), term: term.into() });
        }
    }
    if entry.safeguarding {
        out.push(Highlight::Flagged { flag: "safeguarding".into() });
    }
    if entry.confidential {
        out.push(Highlight::Flagged { flag: "confidential".into() });
    }
    let all = texts(entry).join("\n");
    let lower = all.to_lowercase();
    for (category, phrases) in SENSITIVE_PHRASES {
        let found = phrases_in(&lower, phrases);
        if !found.is_empty() {
            out.push(Highlight::SensitiveWords { category: (*category).into(), words: found });
        }
    }
    // Free text naming other people: relationship words, and a title followed by a name.
    let free_text = matches!(
        entry.body,
        EntryBody::Consultation { .. } | EntryBody::OnlineConsultation { .. } | EntryBody::AdminMessage { .. }
    );
    let is_document = matches!(entry.body, EntryBody::Document { .. });
    if free_text || is_document {
        let words = words_of(&all);
        let mut people: Vec<String> = Vec::new();
        for (i, w) in words.iter().enumerate() {
            let lw = w.to_lowercase();
            if RELATIONSHIP_WORDS.contains(&lw.as_str()) {
                people.push(lw);
            } else if TITLES.contains(&lw.trim_end_matches('.')) {
                if let Some(next) = words.get(i + 1).filter(|n| n.chars().next().is_some_and(char::is_uppercase)) {
                    people.push(format!("{w} {next}"));
                }
            }
        }
        people.dedup();
        let mut unique = Vec::new();
        for p in people {
            if !unique.contains(&p) {
                unique.push(p);
            }
        }
        if !unique.is_empty() {
            if is_document {
                out.push(Highlight::ThirdPartyDocument { words: unique });
            } else {
                out.push(Highlight::NamesOtherPeople { words: unique });
            }
        } else if is_document {
            let sources = phrases_in(&lower, &["social services", "police", "solicitor", "court", "school", "marac"]);
            if !sources.is_empty() {
                out.push(Highlight::ThirdPartyDocument { words: sources });
            }
        }
    }
    if let EntryBody::TestResult { abnormal: true, filing, .. } = &entry.body {
        if (today - crate::uk::uk_date(entry.entered_at)).num_days() <= RECENT_RESULT_DAYS {
            out.push(Highlight::RecentAbnormalResult { unfiled: *filing == Filing::Unfiled });
        }
    }
    out
}

/// When a review was last decided, what it said and when to look again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewDecision {
    pub outcome: ReviewOutcome,
    pub reason: String,
    pub next_review: Option<NaiveDate>,
    pub decided_at: DateTime<Utc>,
    pub decided_by: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Author, ConsultationStatus, DocumentReview, Origin};
    use crate::ids::{EntryId, PatientId};
    use crate::snomed::{Coding, ConceptId};
    use chrono::TimeZone;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn entry(body: EntryBody, code: Option<(&str, &str)>, entered: NaiveDate) -> Entry {
        Entry {
            id: EntryId::from_uuid(uuid::Uuid::from_u128(1)),
            patient: PatientId::from_uuid(uuid::Uuid::from_u128(2)),
            event_date: entered,
            entered_at: Utc.from_utc_datetime(&entered.and_hms_opt(10, 0, 0).unwrap()),
            author: Author { staff: None, name: "Dr A".into() },
            origin: Origin::Native,
            code: code.map(|(c, t)| Coding { concept: ConceptId::parse(c).unwrap(), term: t.into() }),
            body,
            visibility: OnlineVisibility::Visible,
            nopat: false,
            safeguarding: false,
            confidential: false,
            superseded: None,
        }
    }

    #[test]
    fn more_than_half_excluded_needs_an_action_plan() {
        // R36: "more than 50%" — exactly half is not flagged.
        let f = |r, a| ExclusionFigures { registered_16_plus: r, active_104: a };
        assert!(!f(1000, 500).needs_action_plan());
        assert!(f(1000, 501).needs_action_plan());
        assert!(!f(0, 0).needs_action_plan());
        assert_eq!(f(1000, 500).percent_text(), "50.0%");
        assert_eq!(f(3, 1).percent_text(), "33.3%");
        assert_eq!(f(3, 2).percent_text(), "66.7%");
        assert_eq!(f(0, 0).percent_text(), "0.0%");
    }

    #[test]
    fn sixteen_plus_counts_from_the_sixteenth_birthday() {
        // R36 counts patients aged 16 and over.
        assert_eq!(born_on_or_before_for_16_plus(d(2026, 11, 22)), d(2010, 11, 22));
        assert_eq!(born_on_or_before_for_16_plus(d(2024, 2, 29)), d(2008, 2, 29));
        assert_eq!(born_on_or_before_for_16_plus(d(2025, 2, 28)), d(2009, 2, 28));
        // Born 29 Feb 2008: 16 on 29 Feb 2024, not yet on the 28th.
        assert!(born_on_or_before_for_16_plus(d(2024, 2, 28)) < d(2008, 2, 29));
        assert_eq!(crate::patient::age_on(d(2010, 11, 22), d(2026, 11, 22)), 16);
    }

    #[test]
    fn the_csv_of_nhs_numbers_is_read_line_by_line() {
        // R35: a cohort from a CSV; every bad line is named and nothing is applied.
        let ok = parse_nhs_number_csv("NHS number,name\n943 476 5919,A\n\n9434765919,dup\n9434765870\n").unwrap();
        assert_eq!(ok.iter().map(|n| n.as_str()).collect::<Vec<_>>(), vec!["9434765919", "9434765870"]);
        let bad = parse_nhs_number_csv("9434765919\n1234567890\nabc\n").unwrap_err();
        assert_eq!(bad.iter().map(|p| p.line).collect::<Vec<_>>(), vec![2, 3]);
        assert!(parse_nhs_number_csv("nhs_number\n").is_err());
    }

    #[test]
    fn a_bulk_change_is_confirmed_by_typing_its_count() {
        // R35
        assert!(confirmation_matches("1,204", 1204));
        assert!(confirmation_matches(" 1204 ", 1204));
        assert!(!confirmation_matches("1203", 1204));
        assert!(!confirmation_matches("", 0));
        assert!(!confirmation_matches("0", 0));
        assert!(!confirmation_matches("12a4", 1204));
        assert!(!confirmation_matches("-1204", 1204));
    }

    #[test]
    fn the_trend_has_every_month_oldest_first() {
        let t = trend(
            d(2026, 3, 15),
            4,
            [
                (d(2026, 3, 1), TrendEvent::Excluded),
                (d(2026, 1, 31), TrendEvent::Granted),
                (d(2025, 12, 1), TrendEvent::Withheld),
                (d(2025, 11, 30), TrendEvent::Excluded), // before the window
            ],
        );
        assert_eq!(
            t.iter().map(|m| m.month).collect::<Vec<_>>(),
            vec![d(2025, 12, 1), d(2026, 1, 1), d(2026, 2, 1), d(2026, 3, 1)]
        );
        assert_eq!((t[0].withheld, t[1].granted, t[2].excluded, t[3].excluded), (1, 1, 0, 1));
        assert_eq!(month_start(d(2026, 1, 5), 13), d(2024, 12, 1));
    }

    #[test]
    fn the_assistant_points_at_what_may_need_hiding() {
        let today = d(2026, 11, 22);
        let consult = |t: &str| {
            entry(EntryBody::Consultation { text: t.into(), status: ConsultationStatus::Final }, None, d(2025, 1, 1))
        };
        let h = assist(&consult("Mother reports the patient's father has been aggressive at home."), today);
        assert!(h.iter().any(|x| matches!(x, Highlight::NamesOtherPeople { words } if words.contains(&"mother".into()) && words.contains(&"father".into()))), "{h:?}");
        assert!(h
            .iter()
            .any(|x| matches!(x, Highlight::SensitiveWords { category, .. } if category == "domestic abuse")));
        let h = assist(&consult("Seen with Mrs Patel from next door."), today);
        assert!(
            h.iter()
                .any(|x| matches!(x, Highlight::NamesOtherPeople { words } if words == &vec!["Mrs Patel".to_owned()])),
            "{h:?}"
        );
        assert!(assist(&consult("Sore throat for three days. Advised fluids."), today).is_empty());
        // "son" inside "person" or "season" is not a relationship.
        assert!(assist(&consult("Seasonal allergy; the person was well."), today).is_empty());
        // A sensitive code from the bundled list.
        let coded = entry(
            EntryBody::Coded { value: None },
            Some(("342191000000101", "Subject to child protection plan")),
            d(2020, 1, 1),
        );
        assert!(assist(&coded, today)
            .iter()
            .any(|x| matches!(x, Highlight::SensitiveCode { category, .. } if category == "safeguarding")));
        // A third-party letter.
        let letter = entry(
            EntryBody::Document {
                title: "Letter from social services".into(),
                summary: "About the household.".into(),
                filing: Filing::Filed,
                review: DocumentReview::Reviewed,
            },
            None,
            d(2024, 5, 1),
        );
        assert!(assist(&letter, today).iter().any(|x| matches!(x, Highlight::ThirdPartyDocument { .. })));
        // Recent abnormal results, not old ones or normal ones.
        let result = |abnormal, entered, filing| {
            entry(
                EntryBody::TestResult {
                    test: "HbA1c".into(),
                    value: "48".into(),
                    unit: "mmol/mol".into(),
                    range: "20-41".into(),
                    abnormal,
                    filing,
                },
                None,
                entered,
            )
        };
        assert_eq!(
            assist(&result(true, d(2026, 10, 1), Filing::Unfiled), today),
            vec![Highlight::RecentAbnormalResult { unfiled: true }]
        );
        assert!(assist(&result(true, d(2026, 1, 1), Filing::Filed), today).is_empty());
        assert!(assist(&result(false, d(2026, 11, 1), Filing::Unfiled), today).is_empty());
        // Already hidden: nothing to decide.
        let mut hidden = consult("Mother reports …");
        hidden.nopat = true;
        assert!(assist(&hidden, today).is_empty());
    }

    #[test]
    fn the_bundled_code_list_reads() {
        let codes = sensitive_codes();
        assert!(codes.len() >= 6);
        assert!(codes
            .iter()
            .all(|(id, cat, term)| ConceptId::parse(id).is_ok() && !cat.is_empty() && !term.is_empty()));
    }

    #[test]
    fn a_cohort_describes_itself_without_identifiers() {
        let c = Cohort { min_age: Some(16), has_code: Some("35489007".into()), ..Default::default() };
        assert_eq!(c.describe(), "aged 16 or over, with code 35489007");
        assert_eq!(Cohort::default().describe(), "every registered patient");
        let l = Cohort { nhs_numbers: Some(vec![NhsNumber::parse("9434765919").unwrap()]), ..Default::default() };
        assert!(!l.describe().contains("9434765919"));
    }
}
