//! GP Connect (FHIR STU3, specification 1.6): the provider side of Access Record: Structured.
//!
//! - [`request`]: the request as the Spine Secure Proxy delivers it: the `Ssp-*` headers, the
//!   unsigned JWT of audit claims, and the `Parameters` body, each checked as the specification
//!   says, every failure a [`GpcError`] with the Spine error code it names.
//! - [`structured`]: the `GPConnect-StructuredRecord-Bundle-1` answer (CareConnect-GPC profiles,
//!   one List per clinical area, warnings for what was withheld, `NOPAT` labels) and the
//!   capability statement.
//! - [`documents`]: Access Document: finding a patient, searching their documents (the
//!   `GPConnect-Searchset-Bundle-1`) and retrieving one (`Binary`).
//!
//! Nothing here decides what may be released: the caller passes each entry with its release
//! decision from `caldicott_core::gpconnect`.

pub mod appointments;
pub mod documents;
pub mod request;
pub mod structured;

use serde_json::{json, Value};

/// The Spine's code system for GP Connect errors and warnings.
pub const SPINE_ERROR_SYSTEM: &str = "https://fhir.nhs.uk/STU3/CodeSystem/Spine-ErrorOrWarningCode-1";
/// The code system the Patient Facing Services Prescriptions Management API (FHIR R4) names in
/// its errors.
pub const SPINE_ERROR_SYSTEM_R4: &str = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode";
pub const OPERATION_OUTCOME_PROFILE: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-OperationOutcome-1";
/// The interaction of `POST /Patient/$gpc.getstructuredrecord`.
pub const STRUCTURED_INTERACTION: &str = "urn:nhs:names:services:gpconnect:fhir:operation:gpc.getstructuredrecord-1";
/// The interaction of the structured endpoint's `GET /metadata`.
pub const STRUCTURED_METADATA_INTERACTION: &str =
    "urn:nhs:names:services:gpconnect:structured:fhir:rest:read:metadata-1";
/// The media type of every answer.
pub const FHIR_JSON: &str = "application/fhir+json;charset=utf-8";

/// A GP Connect capability statement: what every endpoint's says alike (FHIR 3.0.1, JSON,
/// this software, the practice as publisher), with its own version, name, profiles (names under
/// the STU3 StructureDefinition base) and `rest`.
pub(crate) fn capability_statement_of(
    version: &str,
    name: &str,
    software_version: &str,
    publisher: &str,
    profiles: &[&str],
    rest: Value,
) -> Value {
    json!({
        "resourceType": "CapabilityStatement",
        "version": version,
        "name": name,
        "status": "active",
        "date": "2026-12-06",
        "publisher": publisher,
        "kind": "capability",
        "software": { "name": "caldicott", "version": software_version },
        "fhirVersion": "3.0.1",
        "acceptUnknown": "both",
        "format": ["application/fhir+json"],
        "profile": profiles
            .iter()
            .map(|p| json!({ "reference": format!("https://fhir.nhs.uk/STU3/StructureDefinition/{p}") }))
            .collect::<Vec<_>>(),
        "rest": [rest],
    })
}

/// The Spine error codes this provider answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpineCode {
    BadRequest,
    InvalidNhsNumber,
    InvalidIdentifierSystem,
    InvalidResource,
    InvalidParameter,
    PatientNotFound,
    NoRecordFound,
    NoPatientConsent,
    AccessDenied,
    /// The caller has no relationship with the patient it names (an app asking about someone
    /// other than its own patient, or the person its holder acts for).
    NoRelationship,
    /// A booking of a slot that is not free.
    DuplicateRejected,
    /// A change to an appointment that has changed since the consumer read it (`If-Match`).
    FhirConstraintViolation,
    /// A resource in a request references something that does not exist here.
    ReferenceNotFound,
    /// Patient Facing Services Prescriptions (R4): the resource asked for does not exist here,
    /// or (a Task) is no longer there to change.
    ResourceNotFound,
    NotImplemented,
    InternalServerError,
}

impl SpineCode {
    pub fn code(self) -> &'static str {
        match self {
            Self::BadRequest => "BAD_REQUEST",
            Self::InvalidNhsNumber => "INVALID_NHS_NUMBER",
            Self::InvalidIdentifierSystem => "INVALID_IDENTIFIER_SYSTEM",
            Self::InvalidResource => "INVALID_RESOURCE",
            Self::InvalidParameter => "INVALID_PARAMETER",
            Self::PatientNotFound => "PATIENT_NOT_FOUND",
            Self::NoRecordFound => "NO_RECORD_FOUND",
            Self::NoPatientConsent => "NO_PATIENT_CONSENT",
            Self::AccessDenied => "ACCESS_DENIED",
            Self::NoRelationship => "NO_RELATIONSHIP",
            Self::DuplicateRejected => "DUPLICATE_REJECTED",
            Self::FhirConstraintViolation => "FHIR_CONSTRAINT_VIOLATION",
            Self::ReferenceNotFound => "REFERENCE_NOT_FOUND",
            Self::ResourceNotFound => "RESOURCE_NOT_FOUND",
            Self::NotImplemented => "NOT_IMPLEMENTED",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
        }
    }
    pub fn display(self) -> &'static str {
        match self {
            Self::BadRequest => "Bad request",
            Self::InvalidNhsNumber => "NHS number invalid",
            Self::InvalidIdentifierSystem => "Invalid identifier system",
            Self::InvalidResource => "Invalid validation of resource",
            Self::InvalidParameter => "Invalid parameter",
            Self::PatientNotFound => "Patient not found",
            Self::NoRecordFound => "No record found",
            Self::NoPatientConsent => "Patient has not provided consent to share data",
            Self::AccessDenied => "Access denied",
            Self::NoRelationship => "No legitimate relationship exists with this patient",
            Self::DuplicateRejected => "Create would lead to creation of a duplicate resource",
            Self::FhirConstraintViolation => "FHIR constraint violated",
            Self::ReferenceNotFound => "Referenced resource not found",
            Self::ResourceNotFound => "Resource not found",
            Self::NotImplemented => "Not implemented",
            Self::InternalServerError => "Internal server error",
        }
    }
    /// The HTTP status the specification's error table gives the code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest | Self::InvalidNhsNumber | Self::InvalidIdentifierSystem => 400,
            Self::InvalidResource | Self::InvalidParameter | Self::ReferenceNotFound => 422,
            Self::PatientNotFound | Self::NoRecordFound | Self::ResourceNotFound => 404,
            Self::NoPatientConsent | Self::AccessDenied | Self::NoRelationship => 403,
            Self::DuplicateRejected | Self::FhirConstraintViolation => 409,
            Self::NotImplemented => 501,
            Self::InternalServerError => 500,
        }
    }
    /// `OperationOutcome.issue.code` for the code.
    fn issue_code(self) -> &'static str {
        match self {
            Self::BadRequest | Self::InvalidResource | Self::InvalidParameter | Self::ReferenceNotFound => "invalid",
            Self::InvalidNhsNumber | Self::InvalidIdentifierSystem => "value",
            Self::PatientNotFound | Self::NoRecordFound | Self::ResourceNotFound => "not-found",
            Self::NoPatientConsent | Self::AccessDenied | Self::NoRelationship => "forbidden",
            Self::DuplicateRejected => "duplicate",
            Self::FhirConstraintViolation => "conflict",
            Self::NotImplemented => "not-supported",
            Self::InternalServerError => "exception",
        }
    }
}

/// The one `identifier=[system]|[value]` of a search (`INVALID_PARAMETER` when it is missing,
/// repeated or names no system): the system it names and its value, for the caller to check
/// against `system` (the one it expects, `what` its value is called in the diagnostics).
pub(crate) fn one_identifier<'q>(
    query: &'q [(String, String)],
    system: &str,
    what: &str,
) -> Result<(&'q str, &'q str), GpcError> {
    let ids: Vec<&String> = query.iter().filter(|(k, _)| k == "identifier").map(|(_, v)| v).collect();
    let [id] = ids.as_slice() else {
        return Err(GpcError::new(
            SpineCode::InvalidParameter,
            format!("identifier must be given once, as {system}|<{what}>"),
        ));
    };
    id.split_once('|').ok_or_else(|| {
        GpcError::new(SpineCode::InvalidParameter, format!("identifier must name its system: {system}|<{what}>"))
    })
}

/// A refused request: the Spine code and what, exactly, was wrong (never patient data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpcError {
    pub code: SpineCode,
    pub diagnostics: String,
}

impl GpcError {
    pub fn new(code: SpineCode, diagnostics: impl Into<String>) -> Self {
        Self { code, diagnostics: diagnostics.into() }
    }
    /// The error as a UK Core OperationOutcome (FHIR R4), as the Patient Facing Services
    /// Prescriptions Management API answers its errors.
    pub fn operation_outcome_r4(&self) -> Value {
        json!({
            "resourceType": "OperationOutcome",
            "meta": { "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-OperationOutcome"] },
            "issue": [{
                "severity": "error",
                "code": self.code.issue_code(),
                "details": { "coding": [{
                    "system": SPINE_ERROR_SYSTEM_R4,
                    "code": self.code.code(),
                    "display": self.code.display(),
                }] },
                "diagnostics": self.diagnostics,
            }],
        })
    }
    /// The error as a `GPConnect-OperationOutcome-1`.
    pub fn operation_outcome(&self) -> Value {
        json!({
            "resourceType": "OperationOutcome",
            "meta": { "profile": [OPERATION_OUTCOME_PROFILE] },
            "issue": [{
                "severity": "error",
                "code": self.code.issue_code(),
                "details": { "coding": [{
                    "system": SPINE_ERROR_SYSTEM,
                    "code": self.code.code(),
                    "display": self.code.display(),
                }] },
                "diagnostics": self.diagnostics,
            }],
        })
    }
}

impl std::fmt::Display for GpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.code(), self.diagnostics)
    }
}

impl std::error::Error for GpcError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_a_gp_connect_operation_outcome() {
        let oo = GpcError::new(SpineCode::PatientNotFound, "no such patient").operation_outcome();
        assert_eq!(oo["meta"]["profile"][0], OPERATION_OUTCOME_PROFILE);
        assert_eq!(oo["issue"][0]["severity"], "error");
        assert_eq!(oo["issue"][0]["code"], "not-found");
        assert_eq!(oo["issue"][0]["details"]["coding"][0]["system"], SPINE_ERROR_SYSTEM);
        assert_eq!(oo["issue"][0]["details"]["coding"][0]["code"], "PATIENT_NOT_FOUND");
        assert_eq!(SpineCode::PatientNotFound.http_status(), 404);
        assert_eq!(SpineCode::InvalidParameter.http_status(), 422);
        assert_eq!(SpineCode::InvalidNhsNumber.http_status(), 400);
        assert_eq!(SpineCode::AccessDenied.http_status(), 403);
        assert_eq!(SpineCode::NoRelationship.http_status(), 403);
        assert_eq!(
            (SpineCode::DuplicateRejected.http_status(), SpineCode::DuplicateRejected.code()),
            (409, "DUPLICATE_REJECTED")
        );
        assert_eq!(SpineCode::FhirConstraintViolation.code(), "FHIR_CONSTRAINT_VIOLATION");
        assert_eq!(
            (SpineCode::ReferenceNotFound.http_status(), SpineCode::ReferenceNotFound.code()),
            (422, "REFERENCE_NOT_FOUND")
        );
    }
}
