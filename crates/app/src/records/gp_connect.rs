//! GP Connect Access Record: Structured, the provider side: a clinician in another care setting
//! (a hospital, urgent care, a community pharmacy, 111) reads the practice's record through the
//! Spine Secure Proxy, for direct care.
//!
//! Each request is checked in the order the specification's error table implies: the `Ssp-*`
//! headers and this practice's ASID, the JWT's claims, the practice's switch, the `Parameters`,
//! then the patient. What is released is decided entry by entry by
//! `caldicott_core::gpconnect::release` (hidden-online entries go with `NOPAT`; private and
//! safeguarding entries stay at the practice, the list saying so). Every answer about a patient
//! (released, refused as not found, refused because the practice has turned the service off)
//! is audited with the requesting organisation, practitioner, consumer system and trace id from
//! the request, and the record is returned only once that event is durable.
//!
//! This is not an outside *patient* view: the online-visibility engine does not decide it, and
//! nothing here reaches a patient, a proxy or an app.

use crate::{new_id, permit, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::entry::{Entry, FileInfo, Section};
use caldicott_core::gpconnect::{document_release, patient_refusal, release, Release, SharingDissent};
use caldicott_core::ids::{AuditEventId, EntryId, PatientId};
use caldicott_core::patient::Patient;
use caldicott_core::permissions::Permission;
use caldicott_core::practice::{OdsCode, Practice};
use caldicott_fhir::gpconnect::documents;
use caldicott_fhir::gpconnect::request::{read_claims, read_parameters, read_ssp, Claims, Ssp, SspHeaders};
use caldicott_fhir::gpconnect::structured::{capability_statement, structured_bundle, StructuredRecord};
use caldicott_fhir::gpconnect::{GpcError, SpineCode, STRUCTURED_INTERACTION, STRUCTURED_METADATA_INTERACTION};
use caldicott_store::EntryQuery;
use serde_json::Value;

/// One request as the web layer received it.
#[derive(Debug, Clone, Copy)]
pub struct GpcCall<'a> {
    /// The practice's ODS code from the request's path.
    pub ods: &'a str,
    pub ssp: SspHeaders<'a>,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
    /// The query's parameters, decoded, in order (searches).
    pub query: &'a [(String, String)],
}

/// The service root of a practice's structured endpoint, below the Spine listener's address:
/// `/gpconnect/{ODS}/STU3/1/structured` (the form SDS publishes: ODS code, FHIR version, major
/// version, service).
pub fn service_root(ods: &str) -> String {
    format!("/gpconnect/{ods}/STU3/1/structured")
}

/// The service root of a practice's Appointment Management endpoint.
pub fn appointments_root(ods: &str) -> String {
    format!("/gpconnect/{ods}/STU3/1/appointments")
}

/// The service root of a practice's Access Document endpoint.
pub fn documents_root(ods: &str) -> String {
    format!("/gpconnect/{ods}/STU3/1/documents")
}

pub(crate) fn internal(e: AppError) -> GpcError {
    match e {
        AppError::Unavailable(m) => GpcError::new(SpineCode::InternalServerError, m),
        other => {
            tracing::error!(error = %other, "GP Connect request failed");
            GpcError::new(SpineCode::InternalServerError, "the request could not be answered")
        }
    }
}

/// Text from a request, safe in an audit detail of `key=value; …` pairs and to show.
pub(crate) fn plain(s: &str) -> String {
    caldicott_fhir::gpconnect::request::shown_text(s).replace(';', ",")
}

impl App {
    /// The practice a request is addressed to, and its checked headers: the practice must exist,
    /// be connected (have an ASID), and be the one `Ssp-To` names.
    pub(crate) async fn gp_connect_practice(
        &self,
        call: &GpcCall<'_>,
        interaction: &str,
    ) -> Result<(Practice, Ssp), GpcError> {
        let ssp = read_ssp(&call.ssp, interaction)?;
        let ods = OdsCode::parse(call.ods)
            .map_err(|_| GpcError::new(SpineCode::BadRequest, "no practice at this address"))?;
        let practice = self
            .store
            .practice_by_ods(&ods)
            .await
            .map_err(|e| internal(e.into()))?
            .ok_or_else(|| GpcError::new(SpineCode::BadRequest, "no practice at this address"))?;
        let Some(asid) = &practice.online.gp_connect_asid else {
            return Err(GpcError::new(SpineCode::AccessDenied, "GP Connect is not set up at this practice"));
        };
        if asid.as_str() != ssp.to {
            return Err(GpcError::new(SpineCode::BadRequest, "Ssp-To is not this practice's ASID"));
        }
        Ok((practice, ssp))
    }

    /// `GET [base]/metadata`: the capability statement. Holds no patient data.
    pub async fn gp_connect_metadata(&self, call: GpcCall<'_>) -> Result<Value, GpcError> {
        let (practice, _) = self.gp_connect_practice(&call, STRUCTURED_METADATA_INTERACTION).await?;
        read_claims(
            call.authorization,
            self.now().timestamp(),
            "organization/*.read",
            &service_root(practice.ods_code.as_str()),
        )?;
        Ok(capability_statement(env!("CARGO_PKG_VERSION"), &practice.name))
    }

    /// `POST [base]/Patient/$gpc.getstructuredrecord`.
    pub async fn gp_connect_structured(&self, call: GpcCall<'_>) -> Result<Value, GpcError> {
        let (practice, ssp) = self.gp_connect_practice(&call, STRUCTURED_INTERACTION).await?;
        let now = self.now();
        let claims = read_claims(
            call.authorization,
            now.timestamp(),
            "patient/*.read",
            &service_root(practice.ods_code.as_str()),
        )?;
        let today = self.today();
        let request = read_parameters(call.body, today)?;
        let areas = request.include.areas().join(",");
        let nhs = request.nhs_number.as_str().to_owned();
        let audit = |patient: Option<PatientId>, outcome: Outcome, entity: String, extra: String| {
            self.gp_connect_audit(
                &claims,
                &ssp,
                patient,
                outcome,
                entity,
                format!("areas={areas}; {extra}"),
                Action::GpConnectStructuredRead,
            )
        };
        if !practice.online.gp_connect_structured {
            self.audit
                .record(
                    practice.id,
                    audit(None, Outcome::Denied, format!("nhs_number/{nhs}"), "practice has turned it off".into()),
                )
                .await
                .map_err(internal)?;
            return Err(GpcError::new(
                SpineCode::AccessDenied,
                "this practice does not offer Access Record: Structured",
            ));
        }
        let not_found =
            || GpcError::new(SpineCode::PatientNotFound, "no patient with this NHS number is registered here");
        let patient =
            self.store.patient_by_nhs_number(practice.id, &request.nhs_number).await.map_err(|e| internal(e.into()))?;
        let patient = match patient {
            Some(p) => match patient_refusal(&p, today) {
                None => p,
                Some(why) => {
                    let rec =
                        audit(Some(p.id), Outcome::NotFound, format!("patient/{}", p.id), format!("refused={why:?}"));
                    self.audit.record(practice.id, rec).await.map_err(internal)?;
                    return Err(not_found());
                }
            },
            None => {
                self.audit
                    .record(practice.id, audit(None, Outcome::NotFound, format!("nhs_number/{nhs}"), String::new()))
                    .await
                    .map_err(internal)?;
                return Err(not_found());
            }
        };
        self.gp_connect_consent(
            &practice,
            &claims,
            &ssp,
            &patient,
            "structured record",
            Action::GpConnectStructuredRead,
        )
        .await?;
        let entries = self
            .store
            .entries(practice.id, patient.id, EntryQuery { section: None, after: None, limit: u32::MAX })
            .await
            .map_err(|e| internal(e.into()))?;
        let decided: Vec<_> = entries.iter().map(|e| (e, release(e))).collect();
        let released = decided.iter().filter(|(_, r)| matches!(r, Release::Include { .. })).count();
        let withheld = decided.iter().filter(|(_, r)| matches!(r, Release::Withhold(_))).count();
        let sds = self.sds_user_ids(practice.id, true).await.map_err(internal)?;
        let bundle = structured_bundle(&StructuredRecord {
            practice: &practice,
            patient: &patient,
            include: &request.include,
            entries: decided,
            today,
            sds_user_ids: &sds,
        });
        let rec = audit(
            Some(patient.id),
            Outcome::Success,
            format!("patient/{}", patient.id),
            format!("released_of_record={released}; withheld={withheld}"),
        );
        self.audit.record(practice.id, rec).await.map_err(internal)?;
        Ok(bundle)
    }

    /// The checks every Access Document request passes: the practice and headers, the claims
    /// (`patient/*.read`), and the practice's switch. Returns the base URL for the answer's
    /// links: the service root as the consumer addressed it (`aud`, checked to end with ours).
    async fn gp_connect_documents_call(
        &self,
        call: &GpcCall<'_>,
        interaction: &str,
    ) -> Result<(Practice, Ssp, Claims, String), GpcError> {
        let (practice, ssp, claims, base) =
            self.gp_connect_rooted(call, interaction, "patient/*.read", documents_root).await?;
        if !practice.online.gp_connect_documents {
            let rec = self.gp_connect_audit(
                &claims,
                &ssp,
                None,
                Outcome::Denied,
                "documents".into(),
                "practice has turned it off".into(),
                Action::GpConnectDocumentsRead,
            );
            self.audit.record(practice.id, rec).await.map_err(internal)?;
            return Err(GpcError::new(SpineCode::AccessDenied, "this practice does not offer Access Document"));
        }
        Ok((practice, ssp, claims, base))
    }

    /// The practice and headers, then the claims with `scope` for the service root `root` names
    /// (`aud` must be it); with the base URL for the answer's links, as the consumer addressed it.
    pub(crate) async fn gp_connect_rooted(
        &self,
        call: &GpcCall<'_>,
        interaction: &str,
        scope: &str,
        root: fn(&str) -> String,
    ) -> Result<(Practice, Ssp, Claims, String), GpcError> {
        let (practice, ssp) = self.gp_connect_practice(call, interaction).await?;
        let claims = read_claims(call.authorization, self.now().timestamp(), scope, &root(practice.ods_code.as_str()))?;
        let base = claims.audience.trim_end_matches('/').to_owned();
        Ok((practice, ssp, claims, base))
    }

    /// `GET [base]/metadata` of the documents endpoint.
    pub async fn gp_connect_documents_metadata(&self, call: GpcCall<'_>) -> Result<Value, GpcError> {
        let (practice, _) = self.gp_connect_practice(&call, documents::METADATA_INTERACTION).await?;
        read_claims(
            call.authorization,
            self.now().timestamp(),
            "organization/*.read",
            &documents_root(practice.ods_code.as_str()),
        )?;
        Ok(documents::capability_statement(env!("CARGO_PKG_VERSION"), &practice.name))
    }

    /// A registered, living patient of this practice by id, or the audited "not found".
    pub(crate) async fn gp_connect_patient(
        &self,
        practice: &Practice,
        claims: &Claims,
        ssp: &Ssp,
        id: &str,
        what: &str,
        action: Action,
    ) -> Result<Patient, GpcError> {
        let found = match id.parse::<PatientId>() {
            Ok(pid) => self.store.patient(practice.id, pid).await.map_err(|e| internal(e.into()))?,
            Err(_) => None,
        };
        match found {
            Some(p) if patient_refusal(&p, self.today()).is_none() => Ok(p),
            other => {
                let rec = self.gp_connect_audit(
                    claims,
                    ssp,
                    other.as_ref().map(|p| p.id),
                    Outcome::NotFound,
                    format!("patient/{}", plain(id)),
                    what.into(),
                    action,
                );
                self.audit.record(practice.id, rec).await.map_err(internal)?;
                Err(GpcError::new(SpineCode::PatientNotFound, "no patient with this id is registered here"))
            }
        }
    }

    /// A patient search (`identifier=https://fhir.nhs.uk/Id/nhs-number|…`): the patient when
    /// registered here and living, `None` otherwise (not an error); audited as `action`.
    pub(crate) async fn gp_connect_find(
        &self,
        practice: &Practice,
        claims: &Claims,
        ssp: &Ssp,
        query: &[(String, String)],
        action: Action,
    ) -> Result<Option<Patient>, GpcError> {
        let nhs = documents::read_patient_search(query)?;
        let today = self.today();
        let found = self
            .store
            .patient_by_nhs_number(practice.id, &nhs)
            .await
            .map_err(|e| internal(e.into()))?
            .filter(|p| patient_refusal(p, today).is_none());
        let (patient, outcome, entity) = match &found {
            Some(p) => (Some(p.id), Outcome::Success, format!("patient/{}", p.id)),
            None => (None, Outcome::NotFound, format!("nhs_number/{}", nhs.as_str())),
        };
        let rec = self.gp_connect_audit(claims, ssp, patient, outcome, entity, "find".into(), action);
        self.audit.record(practice.id, rec).await.map_err(internal)?;
        Ok(found)
    }

    /// `GET [base]/Patient?identifier=…|<NHS number>`: the patient, when registered here and
    /// living, in a searchset; an empty searchset otherwise (not an error).
    pub async fn gp_connect_find_patient(&self, call: GpcCall<'_>) -> Result<Value, GpcError> {
        let (practice, ssp, claims, base) =
            self.gp_connect_documents_call(&call, documents::PATIENT_SEARCH_INTERACTION).await?;
        let found = self.gp_connect_find(&practice, &claims, &ssp, call.query, Action::GpConnectDocumentsRead).await?;
        Ok(documents::patient_search_bundle(&base, &ssp.trace_id, found.as_ref().map(|p| (p, &practice)), self.today()))
    }

    /// `GET [base]/Patient/{id}/DocumentReference?…`: the patient's documents that may leave the
    /// practice (`caldicott_core::gpconnect::document_release`) and match the search.
    pub async fn gp_connect_document_search(&self, call: GpcCall<'_>, patient: &str) -> Result<Value, GpcError> {
        let (practice, ssp, claims, base) =
            self.gp_connect_documents_call(&call, documents::DOCUMENT_SEARCH_INTERACTION).await?;
        let search = documents::read_document_search(call.query)?;
        let patient = self
            .gp_connect_patient(&practice, &claims, &ssp, patient, "document search", Action::GpConnectDocumentsRead)
            .await?;
        self.gp_connect_consent(&practice, &claims, &ssp, &patient, "document search", Action::GpConnectDocumentsRead)
            .await?;
        let entries = self
            .store
            .entries(
                practice.id,
                patient.id,
                EntryQuery { section: Some(Section::Documents), after: None, limit: u32::MAX },
            )
            .await
            .map_err(|e| internal(e.into()))?;
        let offered: Vec<(&Entry, bool)> = entries
            .iter()
            .filter_map(|e| match document_release(e) {
                Release::Include { nopat } if search.matches(e, &practice) => Some((e, nopat)),
                _ => None,
            })
            .collect();
        let ids: Vec<EntryId> = offered.iter().map(|(e, _)| e.id).collect();
        let files: std::collections::HashMap<EntryId, FileInfo> =
            self.store.document_files(practice.id, &ids).await.map_err(|e| internal(e.into()))?.into_iter().collect();
        let documents: Vec<(&Entry, Option<FileInfo>, bool)> =
            offered.iter().map(|(e, nopat)| (*e, files.get(&e.id).cloned(), *nopat)).collect();
        let sds = self.sds_user_ids(practice.id, !documents.is_empty()).await.map_err(internal)?;
        let bundle =
            documents::documents_bundle(&base, &ssp.trace_id, &practice, &patient, &documents, self.today(), &sds);
        let rec = self.gp_connect_audit(
            &claims,
            &ssp,
            Some(patient.id),
            Outcome::Success,
            format!("patient/{}", patient.id),
            format!("document search; documents={}", documents.len()),
            Action::GpConnectDocumentsRead,
        );
        self.audit.record(practice.id, rec).await.map_err(internal)?;
        Ok(bundle)
    }

    /// `GET [base]/Binary/{id}`: one document's content, when it may leave the practice and its
    /// patient is registered here and living; `NO_RECORD_FOUND` otherwise, alike.
    pub async fn gp_connect_binary(&self, call: GpcCall<'_>, id: &str) -> Result<Value, GpcError> {
        let (practice, ssp, claims, _) = self.gp_connect_documents_call(&call, documents::BINARY_INTERACTION).await?;
        let today = self.today();
        let entry = match id.parse::<EntryId>() {
            Ok(eid) => self.store.entry(practice.id, eid).await.map_err(|e| internal(e.into()))?,
            Err(_) => None,
        };
        let mut released = None;
        if let Some(e) = entry.filter(|e| matches!(document_release(e), Release::Include { .. })) {
            let patient = self.store.patient(practice.id, e.patient).await.map_err(|e| internal(e.into()))?;
            if let Some(p) = patient.filter(|p| patient_refusal(p, today).is_none()) {
                self.gp_connect_consent(&practice, &claims, &ssp, &p, "retrieve", Action::GpConnectDocumentsRead)
                    .await?;
                released = Some(e);
            }
        }
        let Some(e) = released else {
            let rec = self.gp_connect_audit(
                &claims,
                &ssp,
                None,
                Outcome::NotFound,
                format!("document/{}", plain(id)),
                "retrieve".into(),
                Action::GpConnectDocumentsRead,
            );
            self.audit.record(practice.id, rec).await.map_err(internal)?;
            return Err(GpcError::new(SpineCode::NoRecordFound, "there is no such document"));
        };
        let file = self.store.document_file(practice.id, e.id).await.map_err(|e| internal(e.into()))?;
        let content = crate::documents::content_of(&e, file)
            .ok_or_else(|| GpcError::new(SpineCode::NoRecordFound, "there is no such document"))?;
        let rec = self.gp_connect_audit(
            &claims,
            &ssp,
            Some(e.patient),
            Outcome::Success,
            format!("document/{}", e.id),
            format!("retrieve; bytes={}", content.bytes.len()),
            Action::GpConnectDocumentsRead,
        );
        self.audit.record(practice.id, rec).await.map_err(internal)?;
        Ok(documents::binary(&e.id.to_string(), &content.content_type, &content.bytes))
    }

    /// Refuses, audited, a request for the record of a patient who has dissented from sharing it
    /// through GP Connect (`NO_PATIENT_CONSENT`, 403, as both specifications' error tables say).
    pub(crate) async fn gp_connect_consent(
        &self,
        practice: &Practice,
        claims: &Claims,
        ssp: &Ssp,
        patient: &Patient,
        what: &str,
        action: Action,
    ) -> Result<(), GpcError> {
        let dissent = self.store.gp_connect_dissent(practice.id, patient.id).await.map_err(|e| internal(e.into()))?;
        if dissent.is_none() {
            return Ok(());
        }
        let rec = self.gp_connect_audit(
            claims,
            ssp,
            Some(patient.id),
            Outcome::Denied,
            format!("patient/{}", patient.id),
            format!("{what}; refused=patient has dissented from GP Connect sharing"),
            action,
        );
        self.audit.record(practice.id, rec).await.map_err(internal)?;
        Err(GpcError::new(SpineCode::NoPatientConsent, "the patient has dissented to sharing their clinical record"))
    }

    /// Records the patient's dissent from sharing their record through GP Connect (`reason`:
    /// what they said, or how the practice learnt of it), or with `dissent == false` takes it
    /// away. Audited with the reason; recording it again, or taking away none, changes nothing.
    pub async fn set_gp_connect_dissent(
        &self,
        who: &StaffPrincipal,
        nhs: &str,
        dissent: bool,
        reason: &str,
    ) -> AppResult<Option<SharingDissent>> {
        permit(who, Permission::ChangeOnlineAccess)?;
        let reason = caldicott_fhir::gpconnect::request::clean_text(reason);
        if dissent && reason.is_empty() {
            return Err(AppError::BadRequest(
                "say why: what the patient asked for, or how the practice learnt of their dissent".into(),
            ));
        }
        if reason.chars().count() > 1000 {
            return Err(AppError::BadRequest("the reason can be at most 1,000 characters".into()));
        }
        let patient = self.patient_here(who, nhs).await?;
        let new = dissent.then(|| SharingDissent {
            // To the microsecond, as PostgreSQL keeps it: what is answered is what is held.
            recorded_at: chrono::SubsecRound::trunc_subsecs(self.now(), 6),
            recorded_by: who.name.clone(),
            reason: reason.clone(),
        });
        let detail = match &new {
            Some(d) => format!("dissent recorded: {}", d.reason),
            None if reason.is_empty() => "dissent taken away".to_owned(),
            None => format!("dissent taken away: {reason}"),
        };
        let audit = self.audit_record(
            who,
            Some(patient.id),
            Action::GpConnectDissentChange,
            format!("patient/{}", patient.id),
            Outcome::Success,
            detail,
        );
        if self.store.set_gp_connect_dissent(who.practice, patient.id, new.as_ref(), &audit).await? {
            return Ok(new);
        }
        // Already so (also when another request made it so at the same moment): what stands.
        Ok(self.store.gp_connect_dissent(who.practice, patient.id).await?)
    }

    /// The audit event of a GP Connect request about a patient: the requesting organisation (the
    /// actor's id) and practitioner (SDS user id as the role), and in the detail who they are by
    /// name, the consumer system, its ASID and the Spine trace id.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gp_connect_audit(
        &self,
        c: &Claims,
        ssp: &Ssp,
        patient: Option<PatientId>,
        outcome: Outcome,
        entity: String,
        extra: String,
        action: Action,
    ) -> AuditRecord {
        let who = if c.organisation_name.is_empty() {
            format!("{} at {}", c.practitioner_name, c.organisation_ods)
        } else {
            format!("{} at {} ({})", c.practitioner_name, c.organisation_name, c.organisation_ods)
        };
        let detail = format!(
            "who={}; sds_user={}; role_profile={}; consumer_asid={}; trace={}; device={}; reason={}; {extra}",
            plain(&who),
            plain(&c.sds_user_id),
            plain(c.sds_role_profile_id.as_deref().unwrap_or("none")),
            plain(&ssp.from),
            plain(&ssp.trace_id),
            plain(&c.device),
            plain(&c.reason_for_request),
        );
        AuditRecord::new(
            AuditEventId::from_uuid(new_id()),
            self.now(),
            Actor { kind: ActorKind::GpConnect, id: plain(&c.organisation_ods), role: plain(&c.sds_user_id) },
            patient,
            action,
            entity,
            outcome,
            detail,
        )
    }
}

/// The "who=" part of a GP Connect audit event's detail, for the patient's "who viewed my record".
pub fn reader_named_in(detail: &str) -> Option<&str> {
    detail.split("; ").find_map(|p| p.strip_prefix("who="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_is_read_back_from_the_detail() {
        assert_eq!(reader_named_in("who=Dr A at B (X1); sds_user=1"), Some("Dr A at B (X1)"));
        assert_eq!(reader_named_in("sds_user=1"), None);
        assert_eq!(plain("a;b\nc\u{202E}d"), "a,b cd");
    }
}
