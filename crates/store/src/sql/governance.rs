//! [`GovernanceStore`] for both databases, written once like the rest of `sql`.

use super::SqlStore;
use crate::db::{insert_rows, query, Bind};
use crate::governance::*;
use crate::rows::{corrupt, Cols};
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::entry::Entry;
use caldicott_core::governance::{ExclusionFigures, ReviewOutcome, TrendEvent};
use caldicott_core::ids::{PatientId, PracticeId};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// The 104 in force for each patient: the latest of their 104s and 106s by entered time, 104
/// winning a tie (D5), when that latest is a 104. `{scope}` narrows it to one practice.
macro_rules! active_104 {
    ($scope:literal) => {
        concat!(
            "SELECT practice_id, patient_id, entered_at, author_name FROM (",
            "SELECT e.practice_id, e.patient_id, e.code, e.entered_at, e.author_name, ",
            "ROW_NUMBER() OVER (PARTITION BY e.practice_id, e.patient_id ORDER BY e.entered_at DESC, ",
            "CASE WHEN e.code = '1364731000000104' THEN 0 ELSE 1 END) AS rn ",
            "FROM entry e WHERE e.code IN ('1364731000000104', '1364751000000106')",
            $scope,
            ") x WHERE rn = 1 AND code = '1364731000000104'"
        )
    };
}

/// A registered, living patient `p` on the day bound at `$today`.
macro_rules! registered {
    ($today:literal) => {
        concat!(
            "(p.date_of_death IS NULL OR p.date_of_death > ",
            $today,
            ") AND EXISTS (SELECT 1 FROM registration r WHERE r.practice_id = p.practice_id AND r.patient_id = p.id ",
            "AND r.started <= ",
            $today,
            " AND (r.ended IS NULL OR r.ended > ",
            $today,
            "))"
        )
    };
}

/// Registered, living patients of practice `$1` on `$2`, then `$tail`.
macro_rules! candidates {
    ($tail:literal) => {
        concat!(
            "SELECT p.id, p.nhs_number, p.date_of_birth, r.started FROM patient p ",
            "JOIN registration r ON r.practice_id = p.practice_id AND r.patient_id = p.id ",
            "WHERE p.practice_id = $1 AND r.started <= $2 AND (r.ended IS NULL OR r.ended > $2) ",
            "AND (p.date_of_death IS NULL OR p.date_of_death > $2)",
            $tail
        )
    };
}

fn outcome_row(r: &impl Cols) -> StoreResult<ReviewOutcomeRow> {
    let outcome = r.text("outcome")?;
    Ok(ReviewOutcomeRow {
        id: r.uuid("id")?,
        patient: PatientId::from_uuid(r.uuid("patient_id")?),
        outcome: ReviewOutcome::parse(&outcome).ok_or_else(|| corrupt("review outcome", &outcome))?,
        reason: r.text("reason")?,
        next_review: r.opt_date("next_review")?,
        decided_at: r.time("decided_at")?,
        decided_by: r.text("decided_by")?,
    })
}

fn job_row(r: &impl Cols) -> StoreResult<BulkJob> {
    Ok(BulkJob {
        id: r.uuid("id")?,
        code: r.text("code")?,
        cohort: r.text("cohort")?,
        patients: r.int("patients")?,
        applied_at: r.time("applied_at")?,
        applied_by: r.text("applied_by")?,
        undoes: r.opt_uuid("undoes")?,
        undone_by: r.opt_uuid("undone_by")?,
    })
}

#[async_trait]
impl GovernanceStore for SqlStore {
    async fn exclusion_figures(&self, practice: PracticeId, today: NaiveDate) -> StoreResult<ExclusionFigures> {
        let cutoff = caldicott_core::governance::born_on_or_before_for_16_plus(today);
        let r = query(concat!(
            "SELECT COUNT(*) AS registered, COUNT(a.patient_id) AS active FROM patient p LEFT JOIN (",
            active_104!(" AND e.practice_id = $1"),
            ") a ON a.practice_id = p.practice_id AND a.patient_id = p.id ",
            "WHERE p.practice_id = $1 AND p.date_of_birth <= $2 AND ",
            registered!("$3")
        ))
        .bind(practice.as_uuid())
        .bind(cutoff)
        .bind(today)
        .fetch_one(self.read())
        .await?;
        Ok(ExclusionFigures { registered_16_plus: r.int("registered")?, active_104: r.int("active")? })
    }

    async fn service_exclusion_figures(&self, today: NaiveDate) -> StoreResult<Vec<PracticeFigures>> {
        let cutoff = caldicott_core::governance::born_on_or_before_for_16_plus(today);
        let rows = query(concat!(
            // Each count is a subquery grouped by practice and joined to every practice: on
            // Citus each runs shard by shard (a correlated subquery would not run there).
            "SELECT pr.id, pr.ods_code, pr.name, pr.paused, pr.switch_on, ",
            "COALESCE(ap.plans, 0) AS plans, ",
            "COALESCE(c.registered, 0) AS registered, COALESCE(c.active, 0) AS active ",
            "FROM practice pr LEFT JOIN (SELECT practice_id, COUNT(*) AS plans FROM action_plan GROUP BY practice_id) ap ",
            "ON ap.practice_id = pr.id LEFT JOIN (",
            "SELECT p.practice_id, COUNT(*) AS registered, COUNT(a.patient_id) AS active FROM patient p LEFT JOIN (",
            active_104!(""),
            ") a ON a.practice_id = p.practice_id AND a.patient_id = p.id ",
            "WHERE p.date_of_birth <= $1 AND ",
            registered!("$2"),
            " GROUP BY p.practice_id) c ON c.practice_id = pr.id ORDER BY pr.ods_code"
        ))
        .bind(cutoff)
        .bind(today)
        .fetch_all(self.read())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PracticeFigures {
                    practice: PracticeId::from_uuid(r.uuid("id")?),
                    ods_code: r.text("ods_code")?,
                    name: r.text("name")?,
                    figures: ExclusionFigures {
                        registered_16_plus: r.int("registered")?,
                        active_104: r.int("active")?,
                    },
                    paused: r.flag("paused")?,
                    switch_on: r.opt_date("switch_on")?,
                    has_action_plan: r.int("plans")? > 0,
                })
            })
            .collect()
    }

    async fn active_exclusions(&self, practice: PracticeId, today: NaiveDate) -> StoreResult<Vec<ExclusionRow>> {
        let rows = query(concat!(
            "SELECT p.id, p.nhs_number, p.family_name, p.given_name, p.date_of_birth, ",
            "a.entered_at AS added_at, a.author_name AS added_by FROM patient p JOIN (",
            active_104!(" AND e.practice_id = $1"),
            ") a ON a.practice_id = p.practice_id AND a.patient_id = p.id ",
            "WHERE p.practice_id = $1 AND ",
            registered!("$2"),
            " ORDER BY p.family_name, p.given_name, p.nhs_number"
        ))
        .bind(practice.as_uuid())
        .bind(today)
        .fetch_all(self.read())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ExclusionRow {
                    patient: PatientId::from_uuid(r.uuid("id")?),
                    nhs_number: r.text("nhs_number")?,
                    family_name: r.text("family_name")?,
                    given_name: r.text("given_name")?,
                    date_of_birth: r.date("date_of_birth")?,
                    added_at: r.time("added_at")?,
                    added_by: r.text("added_by")?,
                })
            })
            .collect()
    }

    async fn latest_review_outcomes(&self, practice: PracticeId) -> StoreResult<Vec<ReviewOutcomeRow>> {
        let rows = query(
            "SELECT * FROM (SELECT o.*, ROW_NUMBER() OVER (PARTITION BY o.patient_id \
             ORDER BY o.decided_at DESC, o.id DESC) AS rn FROM enhanced_review_outcome o WHERE o.practice_id = $1) x \
             WHERE rn = 1",
        )
        .bind(practice.as_uuid())
        .fetch_all(self.read())
        .await?;
        rows.iter().map(outcome_row).collect()
    }

    async fn review_outcomes(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<ReviewOutcomeRow>> {
        self.rows_by(
            "SELECT * FROM enhanced_review_outcome WHERE practice_id = $1 AND patient_id = $2 \
             ORDER BY decided_at DESC, id DESC",
            practice,
            patient.as_uuid(),
            outcome_row,
        )
        .await
    }

    async fn record_review_outcome(
        &self,
        practice: PracticeId,
        o: &ReviewOutcomeRow,
        entry: Option<&Entry>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        if let Some(e) = entry {
            if e.patient != o.patient {
                return Err(StoreError::refused("the entry belongs to another patient"));
            }
            Self::insert_entry(&mut tx, practice, e).await?;
        }
        query(
            "INSERT INTO enhanced_review_outcome (practice_id, id, patient_id, outcome, reason, next_review, \
             decided_at, decided_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(practice.as_uuid())
        .bind(o.id)
        .bind(o.patient.as_uuid())
        .bind(o.outcome.as_str())
        .bind(&o.reason)
        .bind(o.next_review)
        .bind(o.decided_at)
        .bind(&o.decided_by)
        .execute(&mut tx)
        .await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn trend_events(
        &self,
        practice: PracticeId,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(DateTime<Utc>, TrendEvent)>> {
        let rows = query(
            "SELECT entered_at AS at, 'excluded' AS kind FROM entry WHERE practice_id = $1 \
             AND code = '1364731000000104' AND entered_at >= $2 \
             UNION ALL SELECT decided_at AS at, outcome AS kind FROM enhanced_review_outcome \
             WHERE practice_id = $1 AND decided_at >= $2",
        )
        .bind(practice.as_uuid())
        .bind(since)
        .fetch_all(self.read())
        .await?;
        rows.iter()
            .map(|r| {
                let kind = r.text("kind")?;
                let event = match kind.as_str() {
                    "excluded" => TrendEvent::Excluded,
                    "granted" => TrendEvent::Granted,
                    "withheld" => TrendEvent::Withheld,
                    other => return Err(corrupt("trend event", other)),
                };
                Ok((r.time("at")?, event))
            })
            .collect()
    }

    async fn cohort_candidates(
        &self,
        practice: PracticeId,
        today: NaiveDate,
        has_code: Option<&str>,
    ) -> StoreResult<Vec<CohortCandidate>> {
        let q = match has_code {
            Some(code) => query(candidates!(
                " AND EXISTS (SELECT 1 FROM entry e WHERE e.practice_id = p.practice_id \
                 AND e.patient_id = p.id AND e.code = $3)"
            ))
            .bind(practice.as_uuid())
            .bind(today)
            .bind(code.to_owned()),
            None => query(candidates!("")).bind(practice.as_uuid()).bind(today),
        };
        let rows = q.fetch_all(self.read()).await?;
        rows.iter()
            .map(|r| {
                Ok(CohortCandidate {
                    patient: PatientId::from_uuid(r.uuid("id")?),
                    nhs_number: r.text("nhs_number")?,
                    date_of_birth: r.date("date_of_birth")?,
                    registered_on: r.date("started")?,
                })
            })
            .collect()
    }

    async fn apply_bulk_code(
        &self,
        practice: PracticeId,
        job: &BulkJob,
        entries: &[Entry],
        audit: &[AuditRecord],
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        query(
            "INSERT INTO bulk_code_job (practice_id, id, code, cohort, patients, applied_at, applied_by, undoes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(practice.as_uuid())
        .bind(job.id)
        .bind(&job.code)
        .bind(&job.cohort)
        .bind(job.patients)
        .bind(job.applied_at)
        .bind(&job.applied_by)
        .bind(job.undoes)
        .execute(&mut tx)
        .await?;
        if let Some(undone) = job.undoes {
            let q = query(
                "UPDATE bulk_code_job SET undone_by = $1 WHERE practice_id = $2 AND id = $3 AND undone_by IS NULL",
            )
            .bind(job.id)
            .bind(practice.as_uuid())
            .bind(undone);
            Self::change_one_in(&mut tx, q, StoreError::refused("that bulk change has already been undone")).await?;
        }
        for e in entries {
            Self::insert_entry(&mut tx, practice, e).await?;
            query("INSERT INTO bulk_code_item (practice_id, job_id, patient_id, entry_id) VALUES ($1, $2, $3, $4)")
                .bind(practice.as_uuid())
                .bind(job.id)
                .bind(e.patient.as_uuid())
                .bind(e.id.as_uuid())
                .execute(&mut tx)
                .await?;
        }
        let records: Vec<&AuditRecord> = audit.iter().collect();
        Self::commit_audited(tx, practice, &records).await
    }

    async fn bulk_jobs(&self, practice: PracticeId) -> StoreResult<Vec<BulkJob>> {
        let rows = query("SELECT * FROM bulk_code_job WHERE practice_id = $1 ORDER BY applied_at DESC, id DESC")
            .bind(practice.as_uuid())
            .fetch_all(self.read())
            .await?;
        rows.iter().map(job_row).collect()
    }

    async fn bulk_job(&self, practice: PracticeId, id: Uuid) -> StoreResult<Option<BulkJob>> {
        self.row_by("SELECT * FROM bulk_code_job WHERE practice_id = $1 AND id = $2", practice, id, job_row).await
    }

    async fn bulk_job_patients(&self, practice: PracticeId, job: Uuid) -> StoreResult<Vec<PatientId>> {
        self.rows_by(
            "SELECT patient_id FROM bulk_code_item WHERE practice_id = $1 AND job_id = $2",
            practice,
            job,
            |r| Ok(PatientId::from_uuid(r.uuid("patient_id")?)),
        )
        .await
    }

    async fn seed_patients(
        &self,
        practice: PracticeId,
        patients: &[caldicott_core::patient::Patient],
        entries: &[Entry],
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let now = Utc::now();
        for chunk in patients.chunks(1000) {
            if chunk.iter().any(|p| p.practice != practice) {
                return Err(StoreError::refused("a patient belongs to another practice"));
            }
            let (sql, args) = insert_rows(
                "INSERT INTO patient (practice_id, id, nhs_number, title, given_name, family_name, date_of_birth, \
                 sex, email, mobile, address_lines, postcode, preferred_contact, date_of_death, created_at)",
                chunk.iter().map(|p| {
                    vec![
                        practice.as_uuid().arg(),
                        p.id.as_uuid().arg(),
                        p.nhs_number.as_str().arg(),
                        p.name.title.arg(),
                        p.name.given.arg(),
                        p.name.family.arg(),
                        p.date_of_birth.arg(),
                        p.sex.as_str().arg(),
                        p.contact.email.arg(),
                        p.contact.mobile.arg(),
                        serde_json::to_string(&p.contact.address.lines).unwrap_or_else(|_| "[]".into()).arg(),
                        p.contact.address.postcode.arg(),
                        p.preferred_contact.code().map(i32::from).arg(),
                        p.date_of_death.arg(),
                        now.arg(),
                    ]
                }),
            );
            query(&sql).bind_all(args).execute(&mut tx).await?;
            let regs: Vec<(&caldicott_core::patient::Patient, usize, &caldicott_core::patient::Registration)> =
                chunk.iter().flat_map(|p| p.registrations.iter().enumerate().map(move |(i, r)| (p, i, r))).collect();
            for regs in regs.chunks(2000) {
                let (sql, args) = insert_rows(
                    "INSERT INTO registration (practice_id, patient_id, position, kind, started, ended, previous_practice)",
                    regs.iter().map(|(p, i, r)| {
                        vec![
                            practice.as_uuid().arg(),
                            p.id.as_uuid().arg(),
                            i32::try_from(*i).unwrap_or(i32::MAX).arg(),
                            r.kind.as_str().arg(),
                            r.started.arg(),
                            r.ended.arg(),
                            r.previous_practice.arg(),
                        ]
                    }),
                );
                query(&sql).bind_all(args).execute(&mut tx).await?;
            }
            let (sql, args) = insert_rows(
                "INSERT INTO access_setting (practice_id, patient_id, opted_out)",
                chunk.iter().map(|p| vec![practice.as_uuid().arg(), p.id.as_uuid().arg(), false.arg()]),
            );
            query(&sql).bind_all(args).execute(&mut tx).await?;
        }
        for e in entries {
            Self::insert_entry(&mut tx, practice, e).await?;
        }
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn proxy_links(&self, practice: PracticeId) -> StoreResult<Vec<caldicott_core::access::ProxyLink>> {
        let rows = query(&format!(
            "SELECT {} FROM proxy_link WHERE practice_id = $1 ORDER BY patient_id, granted_on",
            super::PROXY_COLUMNS
        ))
        .bind(practice.as_uuid())
        .fetch_all(self.read())
        .await?;
        rows.iter().map(crate::rows::proxy).collect()
    }

    async fn patients_with_online_accounts(&self, practice: PracticeId) -> StoreResult<Vec<PatientId>> {
        let rows = query("SELECT DISTINCT holder_id FROM online_account WHERE practice_id = $1")
            .bind(practice.as_uuid())
            .fetch_all(self.read())
            .await?;
        rows.iter().map(|r| Ok(PatientId::from_uuid(r.uuid("holder_id")?))).collect()
    }

    async fn action_plan(&self, practice: PracticeId) -> StoreResult<Option<ActionPlan>> {
        let row = query("SELECT * FROM action_plan WHERE practice_id = $1")
            .bind(practice.as_uuid())
            .fetch_optional(self.read())
            .await?;
        row.map(|r| {
            Ok(ActionPlan {
                owner: r.text("owner")?,
                review_by: r.date("review_by")?,
                below_half_by: r.date("below_half_by")?,
                progress: r.text("progress")?,
                updated_at: r.time("updated_at")?,
                updated_by: r.text("updated_by")?,
            })
        })
        .transpose()
    }

    async fn save_action_plan(&self, practice: PracticeId, plan: &ActionPlan, audit: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        query("DELETE FROM action_plan WHERE practice_id = $1").bind(practice.as_uuid()).execute(&mut tx).await?;
        query(
            "INSERT INTO action_plan (practice_id, owner, review_by, below_half_by, progress, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(practice.as_uuid())
        .bind(&plan.owner)
        .bind(plan.review_by)
        .bind(plan.below_half_by)
        .bind(&plan.progress)
        .bind(plan.updated_at)
        .bind(&plan.updated_by)
        .execute(&mut tx)
        .await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }
}
