//! Governance of online access: the enhanced review queue with its redaction assistant, bulk
//! 104/106 with its safeguards (R35), the exclusion reports and monthly return (R36, R37), the
//! action plan, and the ICB's counts across practices.

use crate::permit;
use crate::settings::FieldProblem;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, AuditRecord, Outcome};
use caldicott_core::entry::{Author, Entry, EntryBody, OnlineVisibility, Origin};
use caldicott_core::governance::{
    assist, confirmation_matches, parse_nhs_number_csv, trend, Cohort, ExclusionFigures, Highlight, ReviewOutcome,
    TrendMonth, BULK_104_WARNINGS, MAX_REVIEW_INTERVAL_DAYS,
};
use caldicott_core::ids::{AuditEventId, EntryId, PatientId};
use caldicott_core::patient::{age_on, Patient};
use caldicott_core::permissions::Permission;
use caldicott_core::snomed::{
    enhanced_review, Coding, ConceptId, EnhancedReview, ENHANCED_REVIEW_INDICATED, ENHANCED_REVIEW_NOT_INDICATED,
};
use caldicott_core::visibility::Decision;
pub use caldicott_store::governance::{ActionPlan, BulkJob, ExclusionRow, PracticeFigures, ReviewOutcomeRow};
use caldicott_store::{EntryCursor, EntryQuery};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{HashMap, HashSet};

/// Reads a date typed as day, month and year; `None` when all three are empty.
pub fn parse_date_parts(day: &str, month: &str, year: &str) -> Result<Option<NaiveDate>, String> {
    let parts = [day.trim(), month.trim(), year.trim()];
    if parts.iter().all(|p| p.is_empty()) {
        return Ok(None);
    }
    match (parts[0].parse::<u32>(), parts[1].parse::<u32>(), parts[2].parse::<i32>()) {
        (Ok(d), Ok(m), Ok(y)) if (1900..=2200).contains(&y) => {
            NaiveDate::from_ymd_opt(y, m, d).map(Some).ok_or_else(|| "must be a real date".to_owned())
        }
        _ => Err("must be a day, month and year, for example 31 3 2027".to_owned()),
    }
}

/// Reads an ISO date (`2027-03-31`), as the command line and JSON give it; empty is `None`.
pub fn parse_iso_date(s: &str) -> Result<Option<NaiveDate>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map(Some).map_err(|_| format!("\"{s}\" is not a date like 2027-03-31"))
}

// ---- The review queue ----------------------------------------------------------------------

/// One patient with an active 104, and where their review stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReviewQueueItem {
    pub patient: ExclusionRow,
    /// The latest outcome decided since the 104 in force was recorded.
    pub latest: Option<ReviewOutcomeRow>,
    /// Never reviewed since the 104, or withheld and the next review date has come.
    pub due: bool,
}

/// An entry of the record under review, with what the assistant sees in it and whether the
/// patient would see it if access were granted now.
#[derive(Debug, Clone)]
pub struct ReviewedEntry {
    pub entry: Entry,
    pub highlights: Vec<Highlight>,
    /// `None`: shown once access is granted; `Some(reason)`: still withheld, and why.
    pub withheld_after_grant: Option<String>,
}

/// The enhanced review page of one patient.
#[derive(Debug, Clone)]
pub struct ReviewPage {
    pub patient: Patient,
    pub status: EnhancedReview,
    /// Entries the assistant highlights that the patient would see once access is granted.
    pub to_check: Vec<ReviewedEntry>,
    /// How many entries the record holds in all, and how many are hidden online already.
    pub total_entries: usize,
    pub already_hidden: usize,
    pub outcomes: Vec<ReviewOutcomeRow>,
    /// Levels granted by hand: 104 does not stop them (R3).
    pub manual_grants: Vec<caldicott_core::access::LevelGrant>,
    pub has_online_account: bool,
}

/// A review decision as typed.
#[derive(Debug, Clone, Default)]
pub struct DecisionInput {
    /// "granted" or "withheld".
    pub outcome: String,
    pub reason: String,
    pub next_day: String,
    pub next_month: String,
    pub next_year: String,
}

impl App {
    /// Every registered patient with an active 104, due reviews first, then the longest waiting.
    /// The enhanced review queue as a page shows it, with each patient: audited as a look.
    pub async fn review_queue(&self, who: &StaffPrincipal) -> AppResult<Vec<ReviewQueueItem>> {
        let items = self.review_items(who).await?;
        self.audit_look(
            who,
            None,
            Action::EnhancedReviewQueueView,
            "review-queue",
            format!("patients={}", items.len()),
        )
        .await?;
        Ok(items)
    }

    /// The queue itself (for counts, unaudited: no patient is shown).
    async fn review_items(&self, who: &StaffPrincipal) -> AppResult<Vec<ReviewQueueItem>> {
        permit(who, Permission::GovernanceReports)?;
        let today = self.today();
        let rows = self.store.active_exclusions(who.practice, today).await?;
        let latest: HashMap<PatientId, ReviewOutcomeRow> =
            self.store.latest_review_outcomes(who.practice).await?.into_iter().map(|o| (o.patient, o)).collect();
        let mut items: Vec<ReviewQueueItem> = rows
            .into_iter()
            .map(|patient| {
                let latest = latest.get(&patient.patient).filter(|o| o.decided_at >= patient.added_at).cloned();
                let due = match &latest {
                    None => true,
                    Some(o) => o.next_review.is_none_or(|d| d <= today),
                };
                ReviewQueueItem { patient, latest, due }
            })
            .collect();
        items.sort_by(|a, b| b.due.cmp(&a.due).then(a.patient.added_at.cmp(&b.patient.added_at)));
        Ok(items)
    }

    /// Opens a patient's enhanced review: the record with the assistant's highlights. Audited
    /// as a look at the record.
    pub async fn review_page(&self, who: &StaffPrincipal, nhs: &str) -> AppResult<ReviewPage> {
        permit(who, Permission::GovernanceReports)?;
        let l = self.load(who, nhs, Action::EnhancedReviewView).await?;
        let today = self.today();
        // What the patient would see if a 106 were recorded now.
        let mut granted = l.clone();
        if let EnhancedReview::Active { since } = granted.enhanced_review {
            granted.enhanced_review = EnhancedReview::Overridden { indicated: since, not_indicated: self.now() };
        }
        let policy = self.policy_for(&granted, None, granted.identity);
        let mut to_check = Vec::new();
        let mut total = 0;
        let mut hidden = 0;
        let mut after: Option<EntryCursor> = None;
        loop {
            let batch = self
                .store
                .entries(l.practice.id, l.patient.id, EntryQuery { section: None, after, limit: 1000 })
                .await?;
            let exhausted = batch.len() < 1000;
            for e in batch {
                after = Some(EntryCursor::of(&e));
                total += 1;
                if matches!(e.visibility, OnlineVisibility::Hidden(_)) || e.nopat {
                    hidden += 1;
                    continue;
                }
                let highlights = assist(&e, today);
                if highlights.is_empty() {
                    continue;
                }
                let withheld_after_grant = match policy.decide(&e) {
                    Decision::Shown => None,
                    Decision::Withheld(w) => Some(w.explain()),
                };
                to_check.push(ReviewedEntry { entry: e, highlights, withheld_after_grant });
            }
            if exhausted {
                break;
            }
        }
        let outcomes = self.store.review_outcomes(l.practice.id, l.patient.id).await?;
        let has_online_account = l.identity.is_some();
        let rec = self.audit_record(
            who,
            Some(l.patient.id),
            Action::EnhancedReviewView,
            format!("patient/{}", l.patient.id),
            Outcome::Success,
            format!("entries={total} highlighted={}", to_check.len()),
        );
        self.audit.record(l.practice.id, rec).await?;
        Ok(ReviewPage {
            status: l.enhanced_review,
            manual_grants: l.access.grants.clone(),
            patient: l.patient,
            to_check,
            total_entries: total,
            already_hidden: hidden,
            outcomes,
            has_online_account,
        })
    }

    /// Records the outcome of an enhanced review: a grant adds 106 (access then follows the
    /// rules); a withhold keeps 104 with its reason and the date to review again. Returns the
    /// problems with the form, if any, without changing anything.
    pub async fn decide_review(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        input: &DecisionInput,
    ) -> AppResult<Result<ReviewOutcomeRow, Vec<FieldProblem>>> {
        permit(who, Permission::DecideEnhancedReviews)?;
        let patient = self.patient_here(who, nhs).await?;
        let facts = self.store.access_facts(who.practice, patient.id).await?;
        let status = enhanced_review(facts.enhanced_review_codes.iter().map(|(c, t)| (c.as_str(), *t)));
        if !status.is_active() {
            return Err(AppError::Conflict(
                "this patient has no active 104, so there is no enhanced review to decide".into(),
            ));
        }
        let today = self.today();
        let mut problems = Vec::new();
        let outcome = ReviewOutcome::parse(input.outcome.trim());
        if outcome.is_none() {
            problems
                .push(FieldProblem { field: "outcome", message: "Choose whether to grant or withhold access".into() });
        }
        let reason = input.reason.trim().to_owned();
        if reason.chars().count() > 1000 {
            problems.push(FieldProblem { field: "reason", message: "Keep the reason to 1,000 characters".into() });
        }
        let mut next_review = None;
        if outcome == Some(ReviewOutcome::Withheld) {
            if reason.is_empty() {
                problems.push(FieldProblem { field: "reason", message: "Say why access is withheld".into() });
            }
            match parse_date_parts(&input.next_day, &input.next_month, &input.next_year) {
                Ok(Some(d)) if d <= today => problems.push(FieldProblem {
                    field: "next_review",
                    message: "The next review date must be in the future".into(),
                }),
                Ok(Some(d)) if (d - today).num_days() > MAX_REVIEW_INTERVAL_DAYS => problems
                    .push(FieldProblem { field: "next_review", message: "Review again within two years".into() }),
                Ok(Some(d)) => next_review = Some(d),
                Ok(None) => problems
                    .push(FieldProblem { field: "next_review", message: "Enter the date to review again".into() }),
                Err(e) => {
                    problems.push(FieldProblem { field: "next_review", message: format!("The next review date {e}") })
                }
            }
        }
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        let outcome = outcome.unwrap_or(ReviewOutcome::Withheld);
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let row = ReviewOutcomeRow {
            id: new_id(),
            patient: patient.id,
            outcome,
            reason: if reason.is_empty() { "Access granted after enhanced review".into() } else { reason },
            next_review,
            decided_at: now,
            decided_by: who.name.clone(),
        };
        let entry = (outcome == ReviewOutcome::Granted).then(|| {
            code_entry(
                patient.id,
                ENHANCED_REVIEW_NOT_INDICATED,
                now,
                who,
                "Enhanced review not indicated before granting access to own health record",
            )
        });
        let entry = entry.transpose()?;
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::EnhancedReviewDecide,
            format!("patient/{}", patient.id),
            Outcome::Success,
            format!(
                "outcome={} next_review={}{}",
                outcome.as_str(),
                next_review.map_or("none".into(), |d| d.to_string()),
                entry
                    .as_ref()
                    .map_or(String::new(), |e| format!(" code={ENHANCED_REVIEW_NOT_INDICATED} entry/{}", e.id))
            ),
        );
        self.store.record_review_outcome(who.practice, &row, entry.as_ref(), &audit).await?;
        Ok(Ok(row))
    }
}

/// A coded entry (no value) of `concept` for `patient`, recorded by `who` at `now` (a 104 or
/// 106 entry, or an enhanced review code).
pub(crate) fn code_entry(
    patient: PatientId,
    concept: &str,
    now: DateTime<Utc>,
    who: &StaffPrincipal,
    term: &str,
) -> AppResult<Entry> {
    Ok(Entry {
        id: EntryId::from_uuid(new_id()),
        patient,
        event_date: caldicott_core::uk::uk_date(now),
        entered_at: now,
        author: Author { staff: Some(who.staff), name: who.name.clone() },
        origin: Origin::Native,
        code: Some(Coding {
            concept: ConceptId::parse(concept).map_err(|e| AppError::Internal(e.to_string()))?,
            term: term.to_owned(),
        }),
        body: EntryBody::Coded { value: None },
        visibility: OnlineVisibility::Visible,
        nopat: false,
        safeguarding: false,
        confidential: false,
        superseded: None,
    })
}

// ---- Bulk 104/106 (R35) --------------------------------------------------------------------

/// A bulk change as typed (the page's form, the command line's flags).
#[derive(Debug, Clone, Default)]
pub struct BulkInput {
    /// "104" or "106".
    pub code: String,
    pub min_age: String,
    pub max_age: String,
    pub has_code: String,
    /// ISO dates (`2024-01-31`).
    pub registered_from: String,
    pub registered_to: String,
    /// The text of a CSV of NHS numbers, if one was given.
    pub csv: String,
}

/// Which code a bulk change records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum BulkCode {
    /// 104: hold back automatic access.
    Indicated,
    /// 106: undo a 104.
    NotIndicated,
}

impl BulkCode {
    pub fn concept(self) -> &'static str {
        match self {
            Self::Indicated => ENHANCED_REVIEW_INDICATED,
            Self::NotIndicated => ENHANCED_REVIEW_NOT_INDICATED,
        }
    }
    pub fn short(self) -> &'static str {
        match self {
            Self::Indicated => "104",
            Self::NotIndicated => "106",
        }
    }
    fn term(self) -> &'static str {
        match self {
            Self::Indicated => "Enhanced review indicated before granting access to own health record",
            Self::NotIndicated => "Enhanced review not indicated before granting access to own health record",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "104" | ENHANCED_REVIEW_INDICATED => Some(Self::Indicated),
            "106" | ENHANCED_REVIEW_NOT_INDICATED => Some(Self::NotIndicated),
            _ => None,
        }
    }
}

/// What a bulk change would do: the dry run, shown before anything is written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BulkPreview {
    pub code: BulkCode,
    pub cohort: Cohort,
    pub description: String,
    /// The patients it would code.
    #[serde(skip)]
    pub patients: Vec<PatientId>,
    pub count: usize,
    /// Patients in the cohort left alone: for 104, their 104 is already active; for 106, they
    /// have no active 104.
    pub unchanged: usize,
    /// NHS numbers from the CSV that are not registered here.
    pub not_registered: Vec<String>,
    /// Patients it would code who have an online account now (104 leaves their existing access
    /// as it is, R3).
    pub with_online_account: usize,
    /// NHS England's advice against bulk 104 (R35); empty for 106.
    pub warnings: Vec<&'static str>,
}

/// Reads the form; every problem is named.
pub fn parse_bulk(input: &BulkInput) -> Result<(BulkCode, Cohort), Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let code = BulkCode::parse(&input.code);
    if code.is_none() {
        problems
            .push(FieldProblem { field: "code", message: "Choose 104 (hold back access) or 106 (undo 104)".into() });
    }
    let mut age = |field: &'static str, s: &str| -> Option<u32> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        match s.parse::<u32>() {
            Ok(a) if a <= 130 => Some(a),
            _ => {
                problems.push(FieldProblem { field, message: "Enter an age in whole years from 0 to 130".into() });
                None
            }
        }
    };
    let min_age = age("min_age", &input.min_age);
    let max_age = age("max_age", &input.max_age);
    if let (Some(a), Some(b)) = (min_age, max_age) {
        if a > b {
            problems.push(FieldProblem {
                field: "max_age",
                message: "The oldest age must not be below the youngest".into(),
            });
        }
    }
    let has_code = match input.has_code.trim() {
        "" => None,
        c => match ConceptId::parse(c) {
            Ok(c) => Some(c.as_str().to_owned()),
            Err(_) => {
                problems.push(FieldProblem {
                    field: "has_code",
                    message: format!("\"{c}\" is not a SNOMED CT concept id (6 to 18 digits)"),
                });
                None
            }
        },
    };
    let mut date = |field: &'static str, s: &str| match parse_iso_date(s) {
        Ok(d) => d,
        Err(e) => {
            problems.push(FieldProblem { field, message: e });
            None
        }
    };
    let registered_from = date("registered_from", &input.registered_from);
    let registered_to = date("registered_to", &input.registered_to);
    let nhs_numbers = if input.csv.trim().is_empty() {
        None
    } else {
        match parse_nhs_number_csv(&input.csv) {
            Ok(n) => Some(n),
            Err(lines) => {
                for p in lines.iter().take(20) {
                    problems.push(FieldProblem {
                        field: "csv",
                        message: if p.line == 0 {
                            format!("The file: {}", p.message)
                        } else {
                            format!("Line {}: {}", p.line, p.message)
                        },
                    });
                }
                if lines.len() > 20 {
                    problems
                        .push(FieldProblem {
                            field: "csv", message: format!("…and {} more lines", lines.len() - 20)
                        });
                }
                None
            }
        }
    };
    let cohort = Cohort { min_age, max_age, has_code, registered_from, registered_to, nhs_numbers };
    if problems.is_empty() && cohort.is_empty() && code == Some(BulkCode::Indicated) {
        problems.push(FieldProblem {
            field: "cohort",
            message: "Choose who to code: an age band, a code, registration dates or a CSV of NHS numbers".into(),
        });
    }
    match (code, problems.is_empty()) {
        (Some(code), true) => Ok((code, cohort)),
        _ => Err(problems),
    }
}

/// What a finished bulk change did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BulkResult {
    pub job: BulkJob,
}

impl App {
    /// The dry run: who a bulk change would code, and the warnings (R35). Nothing is written.
    pub async fn bulk_preview(
        &self,
        who: &StaffPrincipal,
        input: &BulkInput,
    ) -> AppResult<Result<BulkPreview, Vec<FieldProblem>>> {
        permit(who, Permission::GovernanceReports)?;
        let (code, cohort) = match parse_bulk(input) {
            Ok(x) => x,
            Err(p) => return Ok(Err(p)),
        };
        Ok(Ok(self.preview_cohort(who, code, cohort).await?))
    }

    async fn preview_cohort(&self, who: &StaffPrincipal, code: BulkCode, cohort: Cohort) -> AppResult<BulkPreview> {
        let today = self.today();
        let candidates = self.store.cohort_candidates(who.practice, today, cohort.has_code.as_deref()).await?;
        let listed: Option<HashSet<&str>> = cohort.nhs_numbers.as_ref().map(|l| l.iter().map(|n| n.as_str()).collect());
        let active: HashSet<PatientId> =
            self.store.active_exclusions(who.practice, today).await?.into_iter().map(|r| r.patient).collect();
        let mut found: HashSet<&str> = HashSet::new();
        let mut patients = Vec::new();
        let mut unchanged = 0;
        for c in &candidates {
            if let Some(l) = &listed {
                if !l.contains(c.nhs_number.as_str()) {
                    continue;
                }
                found.insert(c.nhs_number.as_str());
            }
            let age = age_on(c.date_of_birth, today);
            if cohort.min_age.is_some_and(|a| age < a) || cohort.max_age.is_some_and(|a| age > a) {
                continue;
            }
            if cohort.registered_from.is_some_and(|d| c.registered_on < d)
                || cohort.registered_to.is_some_and(|d| c.registered_on > d)
            {
                continue;
            }
            let is_active = active.contains(&c.patient);
            let changes = match code {
                BulkCode::Indicated => !is_active,
                BulkCode::NotIndicated => is_active,
            };
            if changes {
                patients.push(c.patient);
            } else {
                unchanged += 1;
            }
        }
        let not_registered = cohort
            .nhs_numbers
            .as_ref()
            .map(|l| l.iter().filter(|n| !found.contains(n.as_str())).map(|n| n.as_str().to_owned()).collect())
            .unwrap_or_default();
        let with_online_account = if code == BulkCode::Indicated {
            let chosen: HashSet<&PatientId> = patients.iter().collect();
            self.store.patients_with_online_accounts(who.practice).await?.iter().filter(|p| chosen.contains(p)).count()
        } else {
            0
        };
        Ok(BulkPreview {
            code,
            description: cohort.describe(),
            cohort,
            count: patients.len(),
            patients,
            unchanged,
            not_registered,
            with_online_account,
            warnings: if code == BulkCode::Indicated { BULK_104_WARNINGS.to_vec() } else { Vec::new() },
        })
    }

    /// Applies a bulk change once the caller has typed the number of patients it changes
    /// (R35): one entry and one audit event per patient, in one transaction.
    pub async fn bulk_apply(
        &self,
        who: &StaffPrincipal,
        input: &BulkInput,
        typed_count: &str,
    ) -> AppResult<Result<BulkResult, Vec<FieldProblem>>> {
        let preview = match self.bulk_preview(who, input).await? {
            Ok(p) => p,
            Err(problems) => return Ok(Err(problems)),
        };
        if !confirmation_matches(typed_count, preview.count) {
            return Ok(Err(vec![FieldProblem {
                field: "confirm",
                message: if preview.count == 0 {
                    "No patient would change, so there is nothing to confirm".into()
                } else {
                    format!("Type {} to confirm that you are coding {} patients", preview.count, preview.count)
                },
            }]));
        }
        let job = self.apply_job(who, preview.code, &preview.description, &preview.patients, None).await?;
        Ok(Ok(BulkResult { job }))
    }

    /// Undoes a bulk 104 with a bulk 106 for those of its patients whose 104 is still the one
    /// in force. The caller types the number of patients, as for any bulk change.
    pub async fn bulk_undo_preview(
        &self,
        who: &StaffPrincipal,
        job: uuid::Uuid,
    ) -> AppResult<(BulkJob, Vec<PatientId>)> {
        permit(who, Permission::GovernanceReports)?;
        let job = self
            .store
            .bulk_job(who.practice, job)
            .await?
            .ok_or_else(|| AppError::NotFound("no such bulk change at this practice".into()))?;
        if job.code != ENHANCED_REVIEW_INDICATED {
            return Err(AppError::Conflict("only a bulk 104 can be undone".into()));
        }
        if job.undone_by.is_some() {
            return Err(AppError::Conflict("that bulk change has already been undone".into()));
        }
        let active: HashSet<PatientId> =
            self.store.active_exclusions(who.practice, self.today()).await?.into_iter().map(|r| r.patient).collect();
        let patients = self
            .store
            .bulk_job_patients(who.practice, job.id)
            .await?
            .into_iter()
            .filter(|p| active.contains(p))
            .collect();
        Ok((job, patients))
    }

    pub async fn bulk_undo(
        &self,
        who: &StaffPrincipal,
        job: uuid::Uuid,
        typed_count: &str,
    ) -> AppResult<Result<BulkResult, Vec<FieldProblem>>> {
        let (original, patients) = self.bulk_undo_preview(who, job).await?;
        if !confirmation_matches(typed_count, patients.len()) {
            return Ok(Err(vec![FieldProblem {
                field: "confirm",
                message: format!(
                    "Type {} to confirm that you are recording 106 for {} patients",
                    patients.len(),
                    patients.len()
                ),
            }]));
        }
        let description =
            format!("undoing the bulk 104 of {} ({})", original.applied_at.format("%-d %B %Y"), original.cohort);
        let job = self.apply_job(who, BulkCode::NotIndicated, &description, &patients, Some(original.id)).await?;
        Ok(Ok(BulkResult { job }))
    }

    async fn apply_job(
        &self,
        who: &StaffPrincipal,
        code: BulkCode,
        description: &str,
        patients: &[PatientId],
        undoes: Option<uuid::Uuid>,
    ) -> AppResult<BulkJob> {
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let job = BulkJob {
            id: new_id(),
            code: code.concept().to_owned(),
            cohort: description.to_owned(),
            patients: patients.len() as i64,
            applied_at: now,
            applied_by: who.name.clone(),
            undoes,
            undone_by: None,
        };
        let mut entries = Vec::with_capacity(patients.len());
        let mut audit = Vec::with_capacity(patients.len() + 1);
        for p in patients {
            let e = code_entry(*p, code.concept(), now, who, code.term())?;
            audit.push(AuditRecord::new(
                AuditEventId::from_uuid(new_id()),
                now,
                who.actor(),
                Some(*p),
                Action::BulkCode,
                format!("entry/{}", e.id),
                Outcome::Success,
                format!("code={} bulk_job={}", code.concept(), job.id),
            ));
            entries.push(e);
        }
        audit.push(AuditRecord::new(
            AuditEventId::from_uuid(new_id()),
            now,
            who.actor(),
            None,
            Action::BulkCodeJob,
            format!("bulk_job/{}", job.id),
            Outcome::Success,
            format!(
                "code={} patients={} cohort={:?}{}",
                code.short(),
                patients.len(),
                description,
                undoes.map_or(String::new(), |u| format!(" undoes=bulk_job/{u}"))
            ),
        ));
        self.store.apply_bulk_code(who.practice, &job, &entries, &audit).await?;
        Ok(job)
    }

    pub async fn bulk_jobs(&self, who: &StaffPrincipal) -> AppResult<Vec<BulkJob>> {
        permit(who, Permission::GovernanceReports)?;
        Ok(self.store.bulk_jobs(who.practice).await?)
    }
}

// ---- Reports (R36, R37) --------------------------------------------------------------------

/// The practice's exclusion report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExclusionReport {
    pub practice_name: String,
    pub ods_code: String,
    pub on: NaiveDate,
    pub figures: ExclusionFigures,
    pub percent: String,
    pub needs_action_plan: bool,
    pub action_plan: Option<ActionPlan>,
    /// Reviews due now (never reviewed since the 104, or past their next review date).
    pub reviews_due: usize,
}

/// An action plan as typed.
#[derive(Debug, Clone, Default)]
pub struct ActionPlanInput {
    pub owner: String,
    /// ISO dates.
    pub review_by: String,
    pub below_half_by: String,
    pub progress: String,
}

impl App {
    pub async fn exclusion_report(&self, who: &StaffPrincipal) -> AppResult<ExclusionReport> {
        permit(who, Permission::GovernanceReports)?;
        let today = self.today();
        let practice = self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let figures = self.store.exclusion_figures(who.practice, today).await?;
        let action_plan = self.store.action_plan(who.practice).await?;
        let reviews_due = self.review_items(who).await?.iter().filter(|i| i.due).count();
        Ok(ExclusionReport {
            practice_name: practice.name,
            ods_code: practice.ods_code.as_str().to_owned(),
            on: today,
            percent: figures.percent_text(),
            needs_action_plan: figures.needs_action_plan(),
            figures,
            action_plan,
            reviews_due,
        })
    }

    /// The monthly return of every active exclusion (R37): NHS number, date added, who added it.
    /// Audited as an export, since it names patients.
    pub async fn monthly_return(&self, who: &StaffPrincipal) -> AppResult<(NaiveDate, Vec<ExclusionRow>)> {
        permit(who, Permission::GovernanceReports)?;
        let today = self.today();
        let rows = self.store.active_exclusions(who.practice, today).await?;
        self.audit_look(
            who,
            None,
            Action::ReportExport,
            "report/monthly-return",
            format!("rows={} on={today}", rows.len()),
        )
        .await?;
        Ok((today, rows))
    }

    /// Exclusions, grants and withholds by calendar month, the last `months` months.
    pub async fn exclusion_trend(&self, who: &StaffPrincipal, months: u32) -> AppResult<Vec<TrendMonth>> {
        permit(who, Permission::GovernanceReports)?;
        let months = months.clamp(1, 60);
        let today = self.today();
        let start = caldicott_core::governance::month_start(today, months - 1);
        let since = start.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc() - chrono::Duration::hours(1);
        let events = self.store.trend_events(who.practice, since).await?;
        let london = chrono_tz::Europe::London;
        Ok(trend(today, months, events.into_iter().map(|(at, kind)| (at.with_timezone(&london).date_naive(), kind))))
    }

    /// Saves the practice's action plan (the practice manager's), audited with old and new.
    pub async fn save_action_plan(
        &self,
        who: &StaffPrincipal,
        input: &ActionPlanInput,
    ) -> AppResult<Result<ActionPlan, Vec<FieldProblem>>> {
        permit(who, Permission::KeepActionPlan)?;
        let mut problems = Vec::new();
        let owner = input.owner.trim();
        if owner.is_empty() || owner.chars().count() > 200 {
            problems.push(FieldProblem {
                field: "owner",
                message: "Enter who owns the plan (up to 200 characters)".into(),
            });
        }
        let today = self.today();
        let mut date = |field: &'static str, what: &str, s: &str| match parse_iso_date(s) {
            Ok(Some(d)) if d >= today => Some(d),
            Ok(Some(_)) => {
                problems.push(FieldProblem { field, message: format!("The {what} date must be today or later") });
                None
            }
            Ok(None) => {
                problems.push(FieldProblem { field, message: format!("Enter the {what} date") });
                None
            }
            Err(e) => {
                problems.push(FieldProblem { field, message: e });
                None
            }
        };
        let review_by = date("review_by", "all-reviewed-by", &input.review_by);
        let below_half_by = date("below_half_by", "below-half-by", &input.below_half_by);
        if input.progress.chars().count() > 5000 {
            problems.push(FieldProblem {
                field: "progress",
                message: "Keep the progress notes to 5,000 characters".into(),
            });
        }
        let (Some(review_by), Some(below_half_by), true) = (review_by, below_half_by, problems.is_empty()) else {
            return Ok(Err(problems));
        };
        let old = self.store.action_plan(who.practice).await?;
        let plan = ActionPlan {
            owner: owner.to_owned(),
            review_by,
            below_half_by,
            progress: input.progress.trim().to_owned(),
            updated_at: caldicott_core::audit::truncate_to_micros(self.now()),
            updated_by: who.name.clone(),
        };
        let describe =
            |p: &ActionPlan| format!("owner={:?} review_by={} below_half_by={}", p.owner, p.review_by, p.below_half_by);
        let audit = self.audit_record(
            who,
            None,
            Action::ActionPlanChange,
            format!("practice/{}", who.practice),
            Outcome::Success,
            format!("old: {} new: {}", old.as_ref().map_or("none".into(), describe), describe(&plan)),
        );
        self.store.save_action_plan(who.practice, &plan, &audit).await?;
        Ok(Ok(plan))
    }

    /// The figures of every practice of the service, for the ICB: counts only, never a
    /// patient. Audited in the analyst's own practice.
    pub async fn icb_figures(&self, who: &StaffPrincipal) -> AppResult<(NaiveDate, Vec<PracticeFigures>)> {
        permit(who, Permission::ServiceFigures)?;
        let today = self.today();
        let rows = self.store.service_exclusion_figures(today).await?;
        self.audit_look(who, None, Action::IcbReportView, "report/icb-exclusions", format!("practices={}", rows.len()))
            .await?;
        Ok((today, rows))
    }
}

/// CSV of the monthly return (R37).
pub fn monthly_return_csv(rows: &[ExclusionRow], today: NaiveDate) -> String {
    let mut out = String::from("nhs_number,family_name,given_name,date_of_birth,age,date_added,added_by\n");
    for r in rows {
        out.push_str(&csv_line(&[
            r.nhs_number.as_str(),
            &r.family_name,
            &r.given_name,
            &r.date_of_birth.to_string(),
            &age_on(r.date_of_birth, today).to_string(),
            &r.added_at.with_timezone(&chrono_tz::Europe::London).date_naive().to_string(),
            &r.added_by,
        ]));
    }
    out
}

/// CSV of the service-wide figures: counts only.
pub fn icb_csv(rows: &[PracticeFigures]) -> String {
    let mut out = String::from(
        "ods_code,practice,registered_16_plus,active_104,percent_excluded,above_50_percent,action_plan,paused,switch_on\n",
    );
    for r in rows {
        out.push_str(&csv_line(&[
            &r.ods_code,
            &r.name,
            &r.figures.registered_16_plus.to_string(),
            &r.figures.active_104.to_string(),
            r.figures.percent_text().trim_end_matches('%'),
            if r.figures.needs_action_plan() { "yes" } else { "no" },
            if r.has_action_plan { "yes" } else { "no" },
            if r.paused { "yes" } else { "no" },
            &r.switch_on.map_or(String::new(), |d| d.to_string()),
        ]));
    }
    out
}

/// CSV of the trend.
pub fn trend_csv(months: &[TrendMonth]) -> String {
    let mut out = String::from("month,excluded_104,granted,withheld\n");
    for m in months {
        out.push_str(&csv_line(&[
            &m.month.format("%Y-%m").to_string(),
            &m.excluded.to_string(),
            &m.granted.to_string(),
            &m.withheld.to_string(),
        ]));
    }
    out
}

/// One CSV line. Fields are quoted when needed, and a field that a spreadsheet would read as a
/// formula is prefixed with a quote mark.
pub fn csv_line(fields: &[&str]) -> String {
    let cells: Vec<String> = fields
        .iter()
        .map(|f| {
            let f = if f.starts_with(['=', '+', '-', '@']) && f.parse::<f64>().is_err() {
                format!("'{f}")
            } else {
                (*f).to_owned()
            };
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f
            }
        })
        .collect();
    format!("{}\n", cells.join(","))
}

// ---- Proxy access reviews due --------------------------------------------------------------

/// How far ahead the proxy reviews report looks.
pub const PROXY_REVIEW_HORIZON_DAYS: i64 = 90;

/// One proxy link that needs a decision now or soon.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProxyReviewRow {
    pub patient_nhs: String,
    pub patient_name: String,
    pub proxy_name: String,
    pub relationship: String,
    /// What is due: paused now (and why), lapsing soon (and when), or unused for five years.
    pub due: String,
}

impl App {
    /// Proxy links of the practice that need a review: paused now by the review age, the 16th
    /// birthday or an end date; lapsing in the next 90 days; or unused for five years (R16–R18).
    pub async fn proxy_reviews_due(&self, who: &StaffPrincipal) -> AppResult<Vec<ProxyReviewRow>> {
        use caldicott_core::access::ProxyStatus;
        use caldicott_core::visibility::{proxy_link_lapse, proxy_link_next_lapse};
        permit(who, Permission::GovernanceReports)?;
        let practice = self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let today = self.today();
        let links = self.store.proxy_links(who.practice).await?;
        let mut people: HashMap<PatientId, Patient> = HashMap::new();
        let mut used: HashMap<PatientId, Vec<(caldicott_core::ids::ProxyLinkId, DateTime<Utc>)>> = HashMap::new();
        let mut rows = Vec::new();
        for link in links.iter().filter(|l| matches!(l.status, ProxyStatus::Active | ProxyStatus::Suspended { .. })) {
            for id in [link.patient, link.proxy] {
                if let std::collections::hash_map::Entry::Vacant(v) = people.entry(id) {
                    if let Some(p) = self.store.patient(who.practice, id).await? {
                        v.insert(p);
                    }
                }
            }
            let (Some(patient), Some(proxy)) = (people.get(&link.patient), people.get(&link.proxy)) else { continue };
            if patient.registration_on(today).is_none() {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(v) = used.entry(link.patient) {
                v.insert(self.store.proxy_last_used(who.practice, link.patient).await?);
            }
            let last = used.get(&link.patient).and_then(|u| u.iter().find(|(id, _)| *id == link.id)).map(|(_, t)| *t);
            let since = last.map_or(link.granted_on, caldicott_core::uk::uk_date);
            let mut due = Vec::new();
            match &link.status {
                ProxyStatus::Suspended { since, reason } => {
                    due.push(format!("Suspended since {}: {reason}", long(*since)))
                }
                _ => {
                    if let Some(w) = proxy_link_lapse(link, patient, &practice.online, today) {
                        due.push(format!("Paused now: {}", w.explain()));
                    } else if let Some(w) =
                        proxy_link_next_lapse(link, patient, &practice.online, today, PROXY_REVIEW_HORIZON_DAYS)
                    {
                        due.push(format!("Soon: {}", w.explain()));
                    }
                }
            }
            if (today - since).num_days() >= 365 * crate::proxies::UNUSED_FLAG_YEARS {
                due.push(match last {
                    Some(t) => format!("Not used since {}", long(caldicott_core::uk::uk_date(t))),
                    None => format!("Never used since it was granted on {}", long(link.granted_on)),
                });
            }
            if !due.is_empty() {
                rows.push(ProxyReviewRow {
                    patient_nhs: patient.nhs_number.as_str().to_owned(),
                    patient_name: patient.name.banner(),
                    proxy_name: proxy.name.banner(),
                    relationship: link.relationship.clone(),
                    due: due.join(". "),
                });
            }
        }
        rows.sort_by(|a, b| a.patient_name.cmp(&b.patient_name));
        self.audit_look(who, None, Action::ReportView, "report/proxy-reviews", format!("rows={}", rows.len())).await?;
        Ok(rows)
    }
}

fn long(d: NaiveDate) -> String {
    d.format("%-d %B %Y").to_string()
}
