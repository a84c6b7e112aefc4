//! FHIR mapping, pure: bytes or JSON in, domain values out, and back. No IO, no store, no
//! decisions about who may see what (callers pass only what the reader is entitled to).
//!
//! - [`read`]: a FHIR R4 (UK Core) Bundle carrying a patient's record from another practice
//!   (transfer-in).
//! - [`write`]: FHIR R4 (UK Core) resources from caldicott's record, for the FHIR API and the
//!   subject access Bundle; what it writes, [`read`] reads back without loss.
//! - [`update_record`]: a pharmacy's GP Connect Update Record message (an ITK3 FHIR STU3 Bundle).
//! - [`gpconnect`]: GP Connect Access Record: Structured (STU3): the request's headers, claims
//!   and parameters checked, and the structured record Bundle written.

pub mod gpconnect;
pub mod read;
pub mod search;
pub mod update_record;
pub mod write;

pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
pub const SNOMED_SYSTEM: &str = "http://snomed.info/sct";
/// HL7 v3 ActCode, which holds `NOPAT` ("no disclosure to patient, family or caregivers").
pub const ACT_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
