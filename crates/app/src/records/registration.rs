//! Registering a patient at the practice, and deregistering one (R6: online access to this
//! practice's record ends, for the patient and for every proxy).

use crate::permit;
use crate::settings::FieldProblem;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, Outcome};
use caldicott_core::ids::*;
use caldicott_core::patient::*;
use caldicott_core::permissions::Permission;
use caldicott_core::practice::PostalAddress;
use caldicott_core::NhsNumber;
use chrono::NaiveDate;

/// The registration form as typed.
#[derive(Debug, Clone, Default)]
pub struct NewRegistration {
    pub nhs_number: String,
    pub given: String,
    pub family: String,
    pub birth_day: String,
    pub birth_month: String,
    pub birth_year: String,
    pub sex: String,
    pub address_line: String,
    pub town: String,
    pub postcode: String,
    pub mobile: String,
    pub email: String,
}

impl App {
    /// Registers a new patient from today, or says what is wrong with the form.
    pub async fn register_patient(
        &self,
        who: &StaffPrincipal,
        r: &NewRegistration,
    ) -> AppResult<Result<Patient, Vec<FieldProblem>>> {
        permit(who, Permission::RegisterPatients)?;
        let today = self.today();
        let mut problems = Vec::new();
        let nhs = NhsNumber::parse(&r.nhs_number)
            .map_err(|e| problems.push(FieldProblem { field: "nhs_number", message: e.to_string() }))
            .ok();
        if r.given.trim().is_empty() {
            problems.push(FieldProblem { field: "given", message: "Enter the patient's first name".into() });
        }
        if r.family.trim().is_empty() {
            problems.push(FieldProblem { field: "family", message: "Enter the patient's last name".into() });
        }
        let dob = match (
            r.birth_day.trim().parse::<u32>(),
            r.birth_month.trim().parse::<u32>(),
            r.birth_year.trim().parse::<i32>(),
        ) {
            (Ok(d), Ok(m), Ok(y)) => NaiveDate::from_ymd_opt(y, m, d).filter(|d| *d <= today && y >= 1900),
            _ => None,
        };
        if dob.is_none() {
            problems.push(FieldProblem {
                field: "birth_day",
                message: "Enter a real date of birth in the past, for example 31 1 1980".into(),
            });
        }
        let sex = Sex::parse(r.sex.trim());
        if sex.is_none() {
            problems.push(FieldProblem { field: "sex", message: "Choose the patient's sex as recorded".into() });
        }
        let postcode = r.postcode.trim().to_ascii_uppercase();
        if postcode.is_empty() {
            problems.push(FieldProblem { field: "postcode", message: "Enter the postcode".into() });
        }
        let email = Some(r.email.trim().to_owned()).filter(|e| !e.is_empty());
        if email.as_ref().is_some_and(|e| !e.contains('@') || e.len() > 254) {
            problems
                .push(FieldProblem { field: "email", message: "Enter an email address like name@example.com".into() });
        }
        let mobile = Some(r.mobile.trim().to_owned()).filter(|m| !m.is_empty());
        if mobile.as_ref().is_some_and(|m| m.chars().filter(char::is_ascii_digit).count() < 10) {
            problems.push(FieldProblem { field: "mobile", message: "Enter a mobile number like 07700 900123".into() });
        }
        let (Some(nhs), Some(dob), Some(sex)) = (nhs, dob, sex) else { return Ok(Err(problems)) };
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        let patient = Patient {
            id: PatientId::from_uuid(new_id()),
            practice: who.practice,
            nhs_number: nhs,
            name: PersonName { title: None, given: r.given.trim().to_owned(), family: r.family.trim().to_owned() },
            date_of_birth: dob,
            sex,
            contact: ContactDetails {
                email,
                mobile,
                address: PostalAddress {
                    lines: [r.address_line.trim(), r.town.trim()]
                        .into_iter()
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    postcode,
                },
            },
            preferred_contact: PreferredContactMethod::Unknown,
            registrations: vec![Registration::since(today)],
            date_of_death: None,
        };
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::PatientCreate,
            format!("patient/{}", patient.id),
            Outcome::Success,
            format!("registered from {today}"),
        );
        match self.store.create_patient(who.practice, &patient, &audit).await {
            Ok(()) => Ok(Ok(patient)),
            Err(caldicott_store::StoreError::Conflict(caldicott_store::Conflict::NhsNumberRegistered)) => {
                Ok(Err(vec![FieldProblem {
                    field: "nhs_number",
                    message: format!(
                        "A patient with NHS number {} is already registered at this practice",
                        patient.nhs_number
                    ),
                }]))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deregisters a patient from today: all online access to this practice's record ends (R6).
    pub async fn deregister_patient(&self, who: &StaffPrincipal, nhs: &str, reason: &str) -> AppResult<()> {
        permit(who, Permission::RegisterPatients)?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(AppError::BadRequest(
                "Enter why the patient is leaving, for example \"moved to another practice\"".into(),
            ));
        }
        let patient = self.patient_here(who, nhs).await?;
        let today = self.today();
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::PatientDeregister,
            format!("patient/{}", patient.id),
            Outcome::Success,
            format!("deregistered on {today}: {reason}"),
        );
        self.store.end_registration(who.practice, patient.id, today, &audit).await.map_err(|e| match e {
            caldicott_store::StoreError::NotFound(_) => {
                AppError::Conflict("the patient is not currently registered".into())
            }
            other => other.into(),
        })
    }
}
