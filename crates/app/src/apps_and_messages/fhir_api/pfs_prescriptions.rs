//! GP Connect Patient Facing Services: Prescriptions Management (FHIR R4, UK Core), for a
//! patient's app (the NHS App through NHS England's API platform, and other apps a patient
//! linked): the patient's medicines (MedicationStatement, MedicationRequest as `plan` for a
//! course and `order` for an issue), ordering a repeat (POST Task), following the orders (GET
//! Task) and cancelling an undecided one (PATCH Task with a JSON Patch), and who prescribed
//! (PractitionerRole). The patient is named by NHS number in paths and references, as the
//! specification does.
//!
//! Nothing here decides what the patient may see or order: the medicines are the FHIR API's for
//! the token's viewer (the visibility engine's answer, hidden courses and issues absent), an
//! order is the FHIR API's `order_repeat` (the repeats the patient's own page offers, the same
//! task for a clinician), and a cancellation its `cancel_order_through_app`. Every request needs
//! `X-Request-ID` (a UUID, answered back with `X-Correlation-ID`), an identity proved at P9
//! (R22), and for a proxy the prescriptions permission (R15).

use super::pfs::refused;
use super::{AppCaller, FhirCaller, Search};
use crate::{App, AppError};
use caldicott_core::nhs_number::NhsNumber;
use caldicott_core::patient::Patient;
use caldicott_core::practice::Practice;
use caldicott_fhir::gpconnect::{GpcError, SpineCode};
use caldicott_fhir::search::{parse_date, DateParam};
use chrono::NaiveDate;
use serde_json::{json, Value};

/// The service root of a practice's Prescriptions Management endpoint, on the main address.
pub fn pfs_prescriptions_root(ods: &str) -> String {
    format!("/pfs/{ods}/FHIR/R4/prescriptions")
}

const UK_CORE: &str = "https://fhir.hl7.org.uk/StructureDefinition/";
const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const RFC4122: &str = "https://tools.ietf.org/html/rfc4122";
/// The one change a patient makes to an order (the specification's JSON Patch).
const CANCEL_PATCH: &str = r#"send a JSON Patch replacing /status with "cancelled""#;

/// One request from a patient's app.
#[derive(Debug, Clone, Copy)]
pub struct RxCall<'a> {
    /// The practice's ODS code from the path.
    pub ods: &'a str,
    /// The bearer token.
    pub token: Option<&'a str>,
    /// The `X-Request-ID` header.
    pub request_id: Option<&'a str>,
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Who is asking about whom: the app, its practice, the patient the token reads.
struct Rx {
    a: Box<AppCaller>,
    practice: Practice,
    patient: Patient,
}

impl Rx {
    fn caller(&self) -> FhirCaller {
        FhirCaller::App(self.a.clone())
    }

    /// The patient as a reference: by NHS number, as the specification names patients.
    fn subject(&self) -> Value {
        let nhs = self.patient.nhs_number.as_str();
        json!({
            "reference": format!("Patient/{nhs}"),
            "identifier": { "system": NHS_NUMBER_SYSTEM, "value": nhs },
            "display": format!("{} {}", self.patient.name.given, self.patient.name.family),
        })
    }

    /// The NHS number a path or a reference names must be the token's patient's.
    fn is_patient(&self, nhs: &str) -> Result<(), GpcError> {
        let n = NhsNumber::parse(nhs.trim())
            .map_err(|_| GpcError::new(SpineCode::InvalidNhsNumber, "the NHS number is not a valid one"))?;
        if n != self.patient.nhs_number {
            return Err(GpcError::new(
                SpineCode::AccessDenied,
                "the app's access token is for another patient: an app reads only its own patient's prescriptions",
            ));
        }
        Ok(())
    }
}

fn invalid(what: impl Into<String>) -> GpcError {
    GpcError::new(SpineCode::InvalidParameter, what)
}

/// Every value of a query parameter.
fn values<'q>(query: &'q [(String, String)], key: &str) -> Vec<&'q str> {
    query.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
}

/// The date parameters (`ge2024-01-01`, several must all hold).
fn dates(query: &[(String, String)], key: &str) -> Result<Vec<DateParam>, GpcError> {
    values(query, key).into_iter().map(|v| parse_date(v).map_err(|e| invalid(format!("{key}: {e}")))).collect()
}

/// Whether a resource's date (the first ten characters of `at`) meets every date parameter.
fn on_dates(at: Option<&str>, params: &[DateParam]) -> bool {
    if params.is_empty() {
        return true;
    }
    let day = at.and_then(|t| t.get(..10)).and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    day.is_some_and(|d| params.iter().all(|p| p.holds_for(d)))
}

/// A searchset of `resources`, each with its full address under `root` (the service's public
/// address).
fn bundle(root: &str, resources: Vec<Value>) -> Value {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let (kind, id) = (r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""));
            let url = format!("{root}/{kind}/{id}");
            json!({ "fullUrl": url, "resource": r })
        })
        .collect();
    caldicott_fhir::write::compact(json!({
        "resourceType": "Bundle",
        "id": crate::new_id().to_string(),
        "identifier": { "system": RFC4122, "value": crate::new_id().to_string() },
        "type": "searchset",
        "entry": entries,
    }))
}

/// A medicine course (`plan`) or issue (`order`) as the specification shapes it, from the FHIR
/// API's MedicationRequest for this viewer.
fn medication_request(mut r: Value, subject: &Value) -> Value {
    let plan = r.get("courseOfTherapyType").is_some();
    r["intent"] = json!(if plan { "plan" } else { "order" });
    r["meta"] = json!({ "profile": [format!("{UK_CORE}UKCore-MedicationRequest")] });
    r["identifier"] = json!([{ "system": RFC4122, "value": r["id"] }]);
    r["subject"] = subject.clone();
    if let Some(staff) = r["requester"]["reference"].as_str().and_then(|s| s.strip_prefix("Practitioner/")) {
        r["requester"]["reference"] = json!(format!("PractitionerRole/{staff}"));
    }
    r
}

/// The name a medicine goes by in a display.
fn drug_of(r: &Value) -> String {
    r["medicationCodeableConcept"]["text"]
        .as_str()
        .or_else(|| r["medicationCodeableConcept"]["coding"][0]["display"].as_str())
        .unwrap_or("a medicine")
        .to_owned()
}

/// A course as a MedicationStatement, based on its `plan` MedicationRequest, named as the
/// specification does ("Repeat prescription request for …").
fn medication_statement(mut s: Value, subject: &Value, repeat: bool) -> Value {
    s["meta"] = json!({ "profile": [format!("{UK_CORE}UKCore-MedicationStatement")] });
    s["identifier"] = json!([{ "system": RFC4122, "value": s["id"] }]);
    s["subject"] = subject.clone();
    let kind = if repeat { "Repeat" } else { "Acute" };
    s["basedOn"][0]["display"] = json!(format!("{kind} prescription request for {}", drug_of(&s)));
    if let Some(o) = s.as_object_mut() {
        o.remove("informationSource");
    }
    s
}

/// An order's Task as the specification shapes it: the patient by NHS number, the requester
/// the patient (or, for a proxy's order, named as the practice recorded it).
fn order_task(mut t: Value, rx: &Rx) -> Value {
    let subject = rx.subject();
    t["identifier"] = json!([{ "system": RFC4122, "value": t["id"] }]);
    t["for"] = subject.clone();
    if rx.a.proxy.is_none() {
        t["requester"] = subject;
    }
    if let Some(o) = t.as_object_mut() {
        o.remove("groupIdentifier");
    }
    t
}

impl App {
    /// The app, its practice and its patient: the request's `X-Request-ID` a UUID, the token
    /// an app's for this practice, the identity P9, a proxy with the prescriptions permission.
    async fn rx(&self, call: &RxCall<'_>) -> Result<Rx, GpcError> {
        let id = call.request_id.map(str::trim).unwrap_or("");
        if uuid::Uuid::try_parse(id).is_err() {
            return Err(GpcError::new(SpineCode::BadRequest, "X-Request-ID must be present and be a UUID"));
        }
        let pfs = super::PfsCall { ods: call.ods, token: call.token, query: call.query, body: call.body };
        let (a, practice) = self.pfs_caller(&pfs).await?;
        let (l, _) = self.prescriptions_patient(&a).await.map_err(refused)?;
        Ok(Rx { a, practice, patient: l.patient })
    }

    /// The service's public address for this practice.
    fn rx_root(&self, rx: &Rx) -> String {
        format!("{}{}", self.public_url(), pfs_prescriptions_root(rx.practice.ods_code.as_str()))
    }

    /// Every resource of a type the FHIR API gives the viewer (all its pages).
    async fn rx_all(&self, rx: &Rx, resource: &str) -> Result<Vec<Value>, GpcError> {
        let caller = rx.caller();
        let base = pfs_prescriptions_root(rx.practice.ods_code.as_str());
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let q = Search { count: Some("1000".into()), cursor: cursor.take(), ..Search::default() };
            let page = self.fhir_search(&caller, resource, &base, &q).await.map_err(refused)?;
            out.extend(page["entry"].as_array().into_iter().flatten().map(|e| e["resource"].clone()));
            let next = page["link"].as_array().into_iter().flatten().find(|l| l["relation"] == "next");
            match next.and_then(|l| l["url"].as_str()).and_then(|u| u.split_once("_cursor=")) {
                Some((_, c)) => cursor = Some(c.split('&').next().unwrap_or(c).to_owned()),
                None => return Ok(out),
            }
        }
    }

    /// `GET …/Patient/<NHS number>/MedicationStatement[?effective=…]`: the patient's courses,
    /// current and past, acute and repeat.
    pub async fn rx_medication_statements(&self, call: RxCall<'_>, nhs: &str) -> Result<Value, GpcError> {
        let rx = self.rx(&call).await?;
        rx.is_patient(nhs)?;
        let effective = dates(call.query, "effective")?;
        let requests = self.rx_all(&rx, "MedicationRequest").await?;
        let repeat = |id: &Value| {
            requests.iter().any(|r| &r["id"] == id && r["courseOfTherapyType"]["coding"][0]["code"] == "continuous")
        };
        let subject = rx.subject();
        let found = self
            .rx_all(&rx, "MedicationStatement")
            .await?
            .into_iter()
            .filter(|s| on_dates(s["effectivePeriod"]["start"].as_str(), &effective))
            .map(|s| {
                let r = repeat(&s["id"]);
                medication_statement(s, &subject, r)
            })
            .collect();
        Ok(bundle(&self.rx_root(&rx), found))
    }

    /// `GET …/Patient/<NHS number>/MedicationRequest[?intent=&status=&authoredon=&identifier=]`:
    /// courses (`plan`) and issues (`order`, based on their course when the patient may see it).
    pub async fn rx_medication_requests(&self, call: RxCall<'_>, nhs: &str) -> Result<Value, GpcError> {
        let rx = self.rx(&call).await?;
        rx.is_patient(nhs)?;
        let intent = match values(call.query, "intent").as_slice() {
            [] => None,
            [i @ ("plan" | "order")] => Some(*i),
            _ => return Err(invalid("intent is plan or order, once")),
        };
        let status = values(call.query, "status");
        let authored = dates(call.query, "authoredon")?;
        if authored.iter().any(|d| d.first > self.today()) {
            return Err(invalid("authoredon: the date is in the future"));
        }
        let identifier = match values(call.query, "identifier").as_slice() {
            [] => None,
            [v] => Some(v.rsplit_once('|').map_or(*v, |(_, value)| value).to_owned()),
            _ => return Err(invalid("identifier is given once")),
        };
        let subject = rx.subject();
        let found = self
            .rx_all(&rx, "MedicationRequest")
            .await?
            .into_iter()
            .map(|r| medication_request(r, &subject))
            .filter(|r| intent.is_none_or(|i| r["intent"] == i))
            .filter(|r| status.is_empty() || status.iter().any(|s| r["status"] == *s))
            .filter(|r| on_dates(r["authoredOn"].as_str(), &authored))
            // caldicott issues no EPS prescription ids: only its own ids match.
            .filter(|r| identifier.as_deref().is_none_or(|i| r["id"] == i))
            .collect();
        Ok(bundle(&self.rx_root(&rx), found))
    }

    /// `GET …/MedicationRequest/<id>`: one course or issue the patient may see (anything else,
    /// hidden or unknown alike, `RESOURCE_NOT_FOUND`).
    pub async fn rx_medication_request(&self, call: RxCall<'_>, id: &str) -> Result<Value, GpcError> {
        let rx = self.rx(&call).await?;
        if uuid::Uuid::try_parse(id).is_err() {
            return Err(invalid("the MedicationRequest id is not valid"));
        }
        match self.fhir_read(&rx.caller(), "MedicationRequest", id).await {
            Ok(r) => Ok(medication_request(r, &rx.subject())),
            Err(AppError::NotFound(_)) => {
                Err(GpcError::new(SpineCode::ResourceNotFound, "no such MedicationRequest for this patient"))
            }
            Err(e) => Err(refused(e)),
        }
    }

    /// `POST …/Task`: orders one of the patient's current repeats (the `focus`), as their own
    /// page would; answers the Task (201).
    pub async fn rx_order(&self, call: RxCall<'_>) -> Result<Value, GpcError> {
        let rx = self.rx(&call).await?;
        let body: Value = serde_json::from_slice(call.body)
            .map_err(|_| GpcError::new(SpineCode::InvalidResource, "the body is not a FHIR Task in JSON"))?;
        if body["resourceType"] != "Task" {
            return Err(GpcError::new(SpineCode::InvalidResource, "send a Task resource"));
        }
        if body["focus"]["reference"].as_str().is_none() {
            return Err(GpcError::new(SpineCode::InvalidResource, "the Task has no focus: name the repeat to order"));
        }
        for (part, what) in [("for", "for"), ("requester", "requester")] {
            let named = body[part]["identifier"]["value"]
                .as_str()
                .or_else(|| body[part]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/")));
            if let Some(n) = named {
                if rx.is_patient(n).is_err() && !(part == "requester" && rx.a.proxy.is_some()) {
                    return Err(GpcError::new(
                        SpineCode::ReferenceNotFound,
                        format!("the {what} reference is not this app's patient"),
                    ));
                }
            }
        }
        // A one-off pharmacy is not offered online: the prescription goes to the nominated one.
        let one_off =
            body["input"].as_array().into_iter().flatten().any(|i| {
                i["type"]["coding"].as_array().into_iter().flatten().any(|c| c["code"] == "preferred-performer")
            });
        if one_off {
            return Err(GpcError::new(
                SpineCode::InvalidResource,
                "a one-off pharmacy cannot be chosen online here: the prescription goes to the patient's nominated \
                 pharmacy (change it with the practice)",
            ));
        }
        let mut order = body.clone();
        order["for"] = json!({ "reference": format!("Patient/{}", rx.patient.id) });
        let made = self.order_repeat(&rx.a, &order).await.map_err(|e| match e {
            AppError::BadRequest(m) if m.contains("cannot be ordered online") => GpcError::new(
                SpineCode::ReferenceNotFound,
                "the focus is not one of the patient's current repeats that may be ordered online",
            ),
            AppError::BadRequest(m) => GpcError::new(SpineCode::InvalidResource, m),
            AppError::Conflict(m) => GpcError::new(SpineCode::DuplicateRejected, m),
            other => refused(other),
        })?;
        Ok(order_task(made, &rx))
    }

    /// `GET …/Task?patient=<NHS number>&id=&status=&authored-on=&_include=Task:focus:MedicationRequest`:
    /// the patient's orders, one Task per medicine.
    pub async fn rx_orders(&self, call: RxCall<'_>) -> Result<Value, GpcError> {
        let rx = self.rx(&call).await?;
        let patient = values(call.query, "patient");
        let id = values(call.query, "id");
        if patient.is_empty() && id.is_empty() {
            return Err(invalid("give patient (the NHS number) or id"));
        }
        if let [nhs] = patient.as_slice() {
            rx.is_patient(nhs)?;
        } else if patient.len() > 1 {
            return Err(invalid("patient is given once"));
        }
        let status = values(call.query, "status");
        let authored = dates(call.query, "authored-on")?;
        let include = values(call.query, "_include");
        if include.iter().any(|i| !matches!(*i, "Task:focus:MedicationRequest" | "Task:focus" | "*")) {
            return Err(invalid("_include is Task:focus:MedicationRequest"));
        }
        let (_, tasks) = self.tasks_read(&rx.caller(), None, None).await.map_err(refused)?;
        let tasks: Vec<Value> = tasks
            .into_iter()
            .filter(|t| id.is_empty() || id.iter().any(|i| t["id"] == *i))
            .filter(|t| status.is_empty() || status.iter().any(|s| t["status"] == *s))
            .filter(|t| on_dates(t["authoredOn"].as_str(), &authored))
            .map(|t| order_task(t, &rx))
            .collect();
        if tasks.is_empty() && !id.is_empty() {
            return Err(GpcError::new(SpineCode::ResourceNotFound, "no such Task for this patient"));
        }
        let mut out = Vec::new();
        if !include.is_empty() {
            let wanted: Vec<&str> = tasks.iter().filter_map(|t| t["focus"]["reference"].as_str()).collect();
            let subject = rx.subject();
            for r in self.rx_all(&rx, "MedicationRequest").await? {
                let reference = format!("MedicationRequest/{}", r["id"].as_str().unwrap_or(""));
                if wanted.contains(&reference.as_str()) {
                    out.push(medication_request(r, &subject));
                }
            }
        }
        out.extend(tasks);
        Ok(bundle(&self.rx_root(&rx), out))
    }

    /// `PATCH …/Task?id=<id>` with `{"op": "replace", "path": "/status", "value": "cancelled"}`
    /// (alone or in an array): cancels the order while the practice has decided none of it.
    /// An order already cancelled or decided is `RESOURCE_NOT_FOUND`, as the specification says.
    pub async fn rx_cancel(&self, call: RxCall<'_>) -> Result<Value, GpcError> {
        let rx = self.rx(&call).await?;
        let id = match values(call.query, "id").as_slice() {
            [id] if !id.trim().is_empty() => (*id).to_owned(),
            _ => return Err(invalid("give the Task's id, once")),
        };
        let patch: Value =
            serde_json::from_slice(call.body).map_err(|_| GpcError::new(SpineCode::InvalidResource, CANCEL_PATCH))?;
        let ops: Vec<&Value> = match &patch {
            Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        let is_cancel = |op: &&Value| op["op"] == "replace" && op["path"] == "/status" && op["value"] == "cancelled";
        if ops.len() != 1 || !ops.iter().all(is_cancel) {
            return Err(GpcError::new(SpineCode::InvalidResource, CANCEL_PATCH));
        }
        // An order already cancelled or decided, or not this patient's, is refused by the
        // cancelling itself (not found, or a conflict): RESOURCE_NOT_FOUND alike.
        let gone = || GpcError::new(SpineCode::ResourceNotFound, "no open order with that Task id for this patient");
        let cancel = json!({ "resourceType": "Task", "id": id, "status": "cancelled" });
        match self.cancel_order_through_app(&rx.a, &id, &cancel).await {
            Ok(t) => Ok(order_task(t, &rx)),
            Err(AppError::NotFound(_) | AppError::Conflict(_)) => Err(gone()),
            Err(e) => Err(refused(e)),
        }
    }

    /// `GET …/PractitionerRole/<id>`: a clinician of the practice who prescribed, as the
    /// MedicationRequests' `requester` names them.
    pub async fn rx_practitioner_role(&self, call: RxCall<'_>, id: &str) -> Result<Value, GpcError> {
        let rx = self.rx(&call).await?;
        if uuid::Uuid::try_parse(id).is_err() {
            return Err(invalid("the PractitionerRole id is not valid"));
        }
        let directory = self.directory(&rx.caller(), "Practitioner").await.map_err(refused)?;
        let p = directory
            .into_iter()
            .find(|p| p["id"] == id)
            .ok_or_else(|| GpcError::new(SpineCode::ResourceNotFound, "no such PractitionerRole"))?;
        let name = &p["name"][0];
        let display = name["text"].as_str().map(str::to_owned).unwrap_or_else(|| {
            let prefix = name["prefix"][0].as_str().unwrap_or("");
            let given = name["given"][0].as_str().unwrap_or("");
            let family = name["family"].as_str().unwrap_or("");
            [prefix, given, family].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" ")
        });
        let mut practitioner = json!({ "reference": format!("Practitioner/{id}"), "display": display });
        if let Some(identifier) = p["identifier"].as_array().and_then(|i| i.first()) {
            practitioner["identifier"] = identifier.clone();
        }
        Ok(json!({
            "resourceType": "PractitionerRole",
            "id": id,
            "meta": { "profile": [format!("{UK_CORE}UKCore-PractitionerRole")] },
            "practitioner": practitioner,
            "organization": {
                "identifier": { "system": ODS_SYSTEM, "value": rx.practice.ods_code.as_str() },
                "display": rx.practice.name,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_course_is_a_plan_and_an_issue_an_order_named_by_nhs_number() {
        let subject = json!({ "reference": "Patient/9000000009" });
        let course = json!({ "resourceType": "MedicationRequest", "id": "c", "courseOfTherapyType": { "coding": [{ "code": "continuous" }] },
            "requester": { "reference": "Practitioner/s1", "display": "Dr A" } });
        let issue = json!({ "resourceType": "MedicationRequest", "id": "i", "basedOn": [{ "reference": "MedicationRequest/c" }] });
        let (c, i) = (medication_request(course, &subject), medication_request(issue, &subject));
        assert_eq!((c["intent"].as_str(), i["intent"].as_str()), (Some("plan"), Some("order")));
        assert_eq!(c["requester"]["reference"], "PractitionerRole/s1");
        assert_eq!(c["subject"]["reference"], "Patient/9000000009");
        assert_eq!(i["basedOn"][0]["reference"], "MedicationRequest/c");
    }

    #[test]
    fn dates_must_all_hold_and_a_missing_date_holds_for_none() {
        let q = vec![
            ("effective".to_owned(), "ge2024-01-01".to_owned()),
            ("effective".to_owned(), "le2024-12-31".to_owned()),
        ];
        let d = dates(&q, "effective").unwrap();
        assert!(on_dates(Some("2024-06-01"), &d));
        assert!(!on_dates(Some("2025-01-01"), &d));
        assert!(!on_dates(None, &d));
        assert!(on_dates(None, &[]));
        assert!(dates(&[("effective".to_owned(), "2024-13".to_owned())], "effective").is_err());
    }
}
