//! Recording a consultation: its text, up to three codes, draft or final, and whether the patient
//! sees it online (with the reason when not). Saving one visible for the first time shows the
//! redaction assistant's findings first (never blocking).

use crate::kernel::{
    csrf_forms, field_errors, to_patient, CheckView, Chrome, Errors, FieldError, InPage, PageError, Portal, PortalForm,
    REASONS,
};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use caldicott_app::session::SignedIn;
use caldicott_app::App;
use serde::Deserialize;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/patients/{nhs_number}/consultations/new", get(consultation_page))
        .route("/patients/{nhs_number}/consultations", post(add_consultation))
}

csrf_forms!(ConsultationForm);

pub struct CodeRow {
    pub number: usize,
    pub field: &'static str,
    pub pick: String,
    pub concept: String,
    pub term: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "consultation.html")]
struct ConsultationPage {
    chrome: Option<Chrome>,
    csrf: String,
    patient: String,
    nhs_digits: String,
    text: String,
    code_rows: Vec<CodeRow>,
    picklist: &'static [(&'static str, &'static str)],
    visible: bool,
    reasons: Vec<(&'static str, &'static str)>,
    reason: String,
    note: String,
    errors: Vec<FieldError>,
    check: Option<CheckView>,
}

impl Errors for ConsultationPage {
    fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

#[derive(Deserialize, Default)]
struct ConsultationForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    visible_online: Option<String>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    pick_1: String,
    #[serde(default)]
    concept_1: String,
    #[serde(default)]
    term_1: String,
    #[serde(default)]
    pick_2: String,
    #[serde(default)]
    concept_2: String,
    #[serde(default)]
    term_2: String,
    #[serde(default)]
    pick_3: String,
    #[serde(default)]
    concept_3: String,
    #[serde(default)]
    term_3: String,
    #[serde(default)]
    checked: String,
}

impl ConsultationForm {
    fn rows(&self) -> [(&String, &String, &String); 3] {
        [
            (&self.pick_1, &self.concept_1, &self.term_1),
            (&self.pick_2, &self.concept_2, &self.term_2),
            (&self.pick_3, &self.concept_3, &self.term_3),
        ]
    }
}

async fn consultation_form(
    app: &App,
    me: &SignedIn,
    nhs: &str,
    f: Option<&ConsultationForm>,
    errors: Vec<FieldError>,
    check: Option<CheckView>,
) -> Result<Response, PageError> {
    let chrome = || Some(Chrome::from(me));
    let (patient, visible_default) = app.view_consultation_form(&me.who, nhs).await.in_page(me)?;
    let empty = ConsultationForm::default();
    let form = f.unwrap_or(&empty);
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let code_rows = form
        .rows()
        .into_iter()
        .enumerate()
        .map(|(i, (pick, concept, term))| CodeRow {
            number: i + 1,
            field: ["code_0", "code_1", "code_2"][i],
            pick: pick.clone(),
            concept: concept.clone(),
            term: term.clone(),
        })
        .collect();
    Ok((
        status,
        ConsultationPage {
            chrome: chrome(),
            csrf: me.csrf_token.clone(),
            patient: format!("{} ({})", patient.name.banner(), patient.nhs_number),
            nhs_digits: patient.nhs_number.as_str().to_owned(),
            text: form.text.clone(),
            code_rows,
            picklist: caldicott_core::snomed::PICKLIST,
            visible: if f.is_some() { form.visible_online.is_some() } else { visible_default },
            reasons: REASONS.iter().map(|r| (r.as_str(), r.display())).collect(),
            reason: form.reason.clone(),
            note: form.note.clone(),
            errors,
            check,
        },
    )
        .into_response())
}

async fn consultation_page(
    State(app): State<App>,
    Portal(me): Portal,
    Path(nhs): Path<String>,
) -> Result<Response, PageError> {
    consultation_form(&app, &me, &nhs, None, Vec::new(), None).await
}

async fn add_consultation(
    State(app): State<App>,
    Path(nhs): Path<String>,
    PortalForm(me, f): PortalForm<ConsultationForm>,
) -> Result<Response, PageError> {
    use caldicott_app::consultation::NewConsultation;
    let input =
        NewConsultation {
            text: f.text.clone(),
            draft: f.status == "draft",
            codes: f
                .rows()
                .into_iter()
                .map(|(pick, concept, term)| {
                    if concept.trim().is_empty() {
                        (pick.clone(), term.clone())
                    } else {
                        (concept.clone(), term.clone())
                    }
                })
                .collect(),
            visible_online: f.visible_online.is_some(),
            hidden_reason: caldicott_core::entry::HiddenReason::parse(&f.reason).filter(|r| REASONS.contains(r)),
            note: f.note.clone(),
            checked: f.checked == "yes",
        };
    // Saved visible for the first time: the redaction assistant reads it first (never blocking).
    if !input.checked && input.visible_online && !input.draft {
        match app.check_consultation(&me.who, &nhs, &input).await.in_page(&me)? {
            Ok(Some(check)) => {
                return consultation_form(&app, &me, &nhs, Some(&f), Vec::new(), Some(check.into())).await;
            }
            Ok(None) => {}
            Err(problems) => {
                let errors = field_errors(problems);
                return consultation_form(&app, &me, &nhs, Some(&f), errors, None).await;
            }
        }
    }
    match app.add_consultation(&me.who, &nhs, &input).await.in_page(&me)? {
        Ok(_) => Ok(to_patient(&me, &nhs, "?consultation_saved")),
        Err(problems) => {
            let errors = field_errors(problems);
            consultation_form(&app, &me, &nhs, Some(&f), errors, None).await
        }
    }
}
