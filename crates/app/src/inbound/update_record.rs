//! GP Connect Update Record (R24–R30): pharmacies' consultation summaries arrive (over HTTP,
//! or as files in a watched inbox), are checked whole, matched to a registered patient by NHS
//! number and date of birth, and wait as a task until a clinician amends, files or rejects them.

use crate::apps::{secret, sha256};
use crate::permit;
use crate::settings::FieldProblem;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::entry::{Author, Entry, EntryBody, HiddenReason, OnlineVisibility, Origin, Redaction};
use caldicott_core::ids::{AuditEventId, EntryId, PatientId, PracticeId, TaskId};
use caldicott_core::permissions::Permission;
use caldicott_core::snomed::{Coding, ConceptId};
use caldicott_core::tasks::{Task, TaskBody, TaskKind, TaskStatus};
use caldicott_core::update_record::{
    item_changes, planned_entries, InboundItem, ItkCode, UpdateRecord, MAX_MESSAGE_BYTES,
};
use caldicott_fhir::update_record::parse;
use caldicott_store::inbound::{
    Amendment, Earlier, InboundDecision, InboundListing, InboundMessage, InboundStatus, Retire, Sender,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use caldicott_store::inbound::{InboundListing as Listing, InboundStatus as Status};

/// What the sender is told (D13). The practice's decisions are never sent back (R27).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Receipt {
    /// The ITK3 response code.
    pub code: u32,
    pub outcome: ItkCode,
    /// Our reference for the message, when it was recorded.
    pub id: Option<Uuid>,
    pub message_id: String,
    /// What was wrong, when it was refused.
    pub problems: Vec<String>,
}

fn system(id: &str) -> Actor {
    Actor { kind: ActorKind::System, id: id.to_owned(), role: "update_record".into() }
}

/// A message under review: as received, as it stands, and what changed.
#[derive(Debug, Clone)]
pub struct InboundView {
    pub message: InboundMessage,
    pub record: UpdateRecord,
    pub amendments: Vec<Amendment>,
    /// For a replacement of a message already filed: what differs from what was filed (R28).
    pub changes_from_filed: Vec<String>,
    /// The message it replaces, when there is one here.
    pub replaces: Option<InboundMessage>,
    /// Exactly what filing will write: one consultation entry, then one entry per item.
    pub to_file: Vec<(Option<Coding>, EntryBody)>,
    /// The registered patient the message matched, when it matched one.
    pub patient: Option<caldicott_core::patient::Patient>,
    /// The redaction assistant's findings on what filing will write, when it would be visible
    /// online, and who would see it (the guidance: redact as information is entered).
    pub entry_check: Option<crate::entry_check::EntryCheck>,
}

/// An amendment as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Amend {
    /// Leave the item out of what is filed.
    Remove { item: usize },
    /// Change the item's SNOMED CT code (or remove the code, keeping the words).
    Recode { item: usize, code: String, term: String },
}

impl App {
    // ---- Senders ----------------------------------------------------------------------------

    /// Registers a pharmacy that may send Update Record messages over HTTP. Returns its client
    /// id and secret (shown once).
    pub async fn register_sender(&self, who: &StaffPrincipal, ods: &str, name: &str) -> AppResult<(Sender, String)> {
        permit(who, Permission::RegisterPharmacies)?;
        let ods = caldicott_core::practice::OdsCode::parse(ods).map_err(|e| AppError::BadRequest(e.to_string()))?;
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(AppError::BadRequest("Enter the pharmacy's name".into()));
        }
        let client_secret = secret();
        let sender = Sender {
            id: new_id(),
            ods_code: ods.as_str().to_owned(),
            name: name.to_owned(),
            client_id: format!("upd_{}", Uuid::now_v7().simple()),
            secret_hash: sha256(&client_secret).to_vec(),
            active: true,
            created_at: self.now(),
        };
        let audit = self.audit_record(
            who,
            None,
            Action::SenderRegister,
            format!("sender/{}", sender.id),
            Outcome::Success,
            format!("ods={}", sender.ods_code),
        );
        self.store.create_sender(who.practice, &sender, &audit).await?;
        Ok((sender, client_secret))
    }

    pub async fn senders(&self, who: &StaffPrincipal) -> AppResult<Vec<Sender>> {
        permit(who, Permission::RegisterPharmacies)?;
        Ok(self.store.senders(who.practice).await?)
    }

    // ---- Receiving ----------------------------------------------------------------------------

    /// A message over HTTP, from a registered pharmacy (HTTP Basic with its client id and secret).
    pub async fn receive_update_http(&self, client_id: &str, client_secret: &str, body: &[u8]) -> AppResult<Receipt> {
        let (practice, sender) = self.sender_credentials(client_id, client_secret).await?;
        self.receive_update_from(practice, &sender, body).await
    }

    /// A message posted by a pharmacy whose credentials were checked (`sender_credentials`)
    /// before its body was read.
    pub async fn receive_update_from(&self, practice: PracticeId, sender: &Sender, body: &[u8]) -> AppResult<Receipt> {
        self.receive_update(practice, Some(sender), "http", body).await
    }

    /// A message delivered as a file into the practice's inbox folder (a mailbox transport).
    /// The transport vouches for the delivery; the sender named in the message must still be a
    /// pharmacy registered here.
    pub async fn receive_update_file(&self, practice: PracticeId, body: &[u8]) -> AppResult<Receipt> {
        self.receive_update(practice, None, "inbox", body).await
    }

    async fn receive_update(
        &self,
        practice_id: PracticeId,
        sender: Option<&Sender>,
        via: &'static str,
        body: &[u8],
    ) -> AppResult<Receipt> {
        let answer = self.receive_update_counted(practice_id, sender, via, body).await;
        let code = match &answer {
            Ok(r) => r.code.to_string(),
            Err(_) => "error".to_owned(),
        };
        metrics::counter!("caldicott_update_record_messages_total", "via" => via, "code" => code).increment(1);
        answer
    }

    async fn receive_update_counted(
        &self,
        practice_id: PracticeId,
        sender: Option<&Sender>,
        via: &str,
        body: &[u8],
    ) -> AppResult<Receipt> {
        let practice = self.store.practice(practice_id).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let actor = system(sender.map_or("inbox", |s| s.ods_code.as_str()));
        let parsed = parse(body);
        let message_id = match &parsed {
            Ok(r) => r.message_id.clone(),
            Err(_) => serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(|s| s.chars().take(100).collect()))
                .unwrap_or_default(),
        };
        // A message received before: the same answer, no second effect (T35).
        if !message_id.is_empty() {
            if let Some(earlier) = self.store.inbound_by_message_id(practice_id, &message_id).await? {
                return Ok(Receipt {
                    code: ItkCode::Duplicate.code(),
                    outcome: ItkCode::Duplicate,
                    id: Some(earlier.id),
                    message_id,
                    problems: vec![duplicate_problem(&earlier)],
                });
            }
        }
        let payload =
            if body.len() <= MAX_MESSAGE_BYTES { String::from_utf8_lossy(body).into_owned() } else { String::new() };
        let mut message = InboundMessage {
            id: new_id(),
            message_id: if message_id.is_empty() {
                format!("unidentified-{}", Uuid::now_v7().simple())
            } else {
                message_id.clone()
            },
            sender_ods: sender.map(|s| s.ods_code.clone()).unwrap_or_default(),
            via: via.to_owned(),
            received_at: now,
            status: InboundStatus::Invalid,
            response_code: i64::from(ItkCode::PayloadInvalid.code()),
            problems: Vec::new(),
            payload,
            record: None,
            items: Vec::new(),
            patient: None,
            replaces: None,
            superseded_by: None,
            task: None,
            decided_at: None,
            decided_by: None,
            decision_note: None,
        };
        let record_and_reply = |m: &InboundMessage, code: ItkCode| Receipt {
            code: code.code(),
            outcome: code,
            id: Some(m.id),
            message_id: m.message_id.clone(),
            problems: m.problems.clone(),
        };
        let audit = |m: &InboundMessage, outcome: Outcome, detail: String| {
            AuditRecord::new(
                AuditEventId::from_uuid(new_id()),
                now,
                actor.clone(),
                m.patient,
                Action::InboundReceive,
                format!("inbound/{}", m.id),
                outcome,
                detail,
            )
        };
        // Switched off (R30): refused, and kept.
        if !practice.online.accept_update_record {
            message.status = InboundStatus::Refused;
            message.response_code = i64::from(ItkCode::Refused.code());
            message.problems = vec![format!("{} does not accept GP Connect Update Record messages", practice.name)];
            if let Ok(r) = &parsed {
                message.sender_ods = r.sender_ods.clone();
            }
            let a = audit(&message, Outcome::Denied, "status=refused code=20010".into());
            if let Some(dup) = self.store_inbound(practice_id, &message, None, Earlier::None, &a).await? {
                return Ok(dup);
            }
            return Ok(record_and_reply(&message, ItkCode::Refused));
        }
        let record = match parsed {
            Ok(r) => r,
            Err(problems) => {
                message.problems = problems;
                // A replacement that cannot be processed: the payload it names, if that came
                // from this sender for this patient and still waits, and the replacement are
                // both void, and the sender is told (R28).
                let void = self.voided_by(practice_id, sender, body, now).await?;
                let mut earlier = Earlier::None;
                let detail = match &void {
                    Some((e, task)) => {
                        message.status = InboundStatus::Void;
                        message.replaces = Some(e.id);
                        message.patient = e.patient;
                        message.problems.push(format!(
                            "this replacement could not be processed, so it and the payload it replaces ({}) are void: \
                             send a corrected replacement",
                            e.message_id
                        ));
                        earlier = Earlier::Void(e.id, task);
                        format!("status=void code=20009 problems={} void=inbound/{}", message.problems.len(), e.id)
                    }
                    None => format!("status=invalid code=20009 problems={}", message.problems.len()),
                };
                let a = audit(&message, Outcome::Failed, detail);
                if let Some(dup) = self.store_inbound(practice_id, &message, None, earlier, &a).await? {
                    return Ok(dup);
                }
                return Ok(record_and_reply(&message, ItkCode::PayloadInvalid));
            }
        };
        message.sender_ods = record.sender_ods.clone();
        // The sender named in the message must be the pharmacy that sent it (HTTP), or one
        // registered here (inbox).
        let sender_ok = match sender {
            Some(s) => s.ods_code.eq_ignore_ascii_case(&record.sender_ods),
            None => self.store.sender_by_ods(practice_id, &record.sender_ods).await?.is_some_and(|s| s.active),
        };
        if !sender_ok {
            message.problems = vec![format!(
                "the message names the sender {}, which is not the pharmacy registered for these credentials or this inbox",
                record.sender_ods
            )];
            let a = audit(&message, Outcome::Failed, "status=invalid code=20009 sender".into());
            if let Some(dup) = self.store_inbound(practice_id, &message, None, Earlier::None, &a).await? {
                return Ok(dup);
            }
            return Ok(record_and_reply(&message, ItkCode::PayloadInvalid));
        }
        message.items = record.items.clone();
        // Patient matching (T34): NHS number and date of birth, registered here now.
        let today = self.today();
        let patient = self
            .store
            .patient_by_nhs_number(practice_id, &record.nhs_number)
            .await?
            .filter(|p| p.date_of_birth == record.birth_date && p.registration_on(today).is_some());
        // A replacement (R28): it names the earlier payload by the message's id, its
        // Composition's identifier or its document Bundle's identifier. Only the pharmacy that
        // sent that payload may replace it (a pharmacy's credentials are bound to its ODS code
        // here), only for the same patient, and only its latest version; anything else is
        // refused whole and changes nothing.
        let earlier = match &record.replaces {
            Some(target) => self.store.inbound_named(practice_id, target).await?,
            None => None,
        };
        if let (Some(e), Some(target)) = (&earlier, &record.replaces) {
            let refusal = if !e.sender_ods.eq_ignore_ascii_case(&record.sender_ods) {
                Some(format!(
                    "the message replaces {target}, which this pharmacy did not send: only the pharmacy that sent a payload may replace it"
                ))
            } else if e.record.as_ref().is_none_or(|r| r.nhs_number != record.nhs_number) {
                Some(format!(
                    "the message replaces {target}, which was about another patient: a replacement must be for the same patient"
                ))
            } else if e.status == InboundStatus::Superseded {
                Some(format!(
                    "the message replaces {target}, which a later message has already replaced: a replacement names the latest version"
                ))
            } else {
                None
            };
            if let Some(why) = refusal {
                message.problems = vec![why];
                let a =
                    audit(&message, Outcome::Failed, format!("status=invalid code=20009 replaces=inbound/{}", e.id));
                if let Some(dup) = self.store_inbound(practice_id, &message, None, Earlier::None, &a).await? {
                    return Ok(dup);
                }
                return Ok(record_and_reply(&message, ItkCode::PayloadInvalid));
            }
        }
        message.replaces = earlier.as_ref().map(|e| e.id);
        let mut supersede_task = None;
        if let Some(e) = &earlier {
            if matches!(e.status, InboundStatus::Pending | InboundStatus::Unmatched) {
                supersede_task =
                    Some(self.closing(practice_id, e, now, "Replaced by a later message from the pharmacy").await?);
            }
        }
        let earlier_change = match (&earlier, &supersede_task) {
            (Some(e), Some(t)) => Earlier::Supersede(e.id, t),
            (Some(e), None) => Earlier::Link(e.id),
            (None, _) => Earlier::None,
        };
        let Some(patient) = patient else {
            message.status = InboundStatus::Unmatched;
            message.response_code = i64::from(ItkCode::Success.code());
            message.record = Some(record);
            let a = audit(&message, Outcome::Success, "status=unmatched code=20013".into());
            if let Some(dup) = self.store_inbound(practice_id, &message, None, earlier_change, &a).await? {
                return Ok(dup);
            }
            return Ok(record_and_reply(&message, ItkCode::Success));
        };
        message.patient = Some(patient.id);
        message.status = InboundStatus::Pending;
        message.response_code = i64::from(ItkCode::Success.code());
        let task = review_task(patient.id, message.id, &record, now, earlier.is_some());
        message.task = Some(task.id);
        message.record = Some(record);
        let a = audit(
            &message,
            Outcome::Success,
            format!(
                "status=pending code=20013 items={}{}",
                message.items.len(),
                message.replaces.map_or(String::new(), |r| format!(" replaces=inbound/{r}"))
            ),
        );
        // A placeholder task (for an earlier message that had none) is never written: the store
        // closes only open tasks it finds.
        if let Some(dup) = self.store_inbound(practice_id, &message, Some(&task), earlier_change, &a).await? {
            return Ok(dup);
        }
        Ok(record_and_reply(&message, ItkCode::Success))
    }

    /// Records a message; when the same message id was recorded meanwhile (two deliveries at
    /// once), answers as for a duplicate instead, so that a message is taken exactly once.
    async fn store_inbound(
        &self,
        practice: PracticeId,
        message: &InboundMessage,
        task: Option<&Task>,
        earlier: Earlier<'_>,
        audit: &AuditRecord,
    ) -> AppResult<Option<Receipt>> {
        match self.store.record_inbound(practice, message, task, earlier, audit).await {
            Ok(()) => Ok(None),
            Err(caldicott_store::StoreError::Conflict(why)) => {
                match self.store.inbound_by_message_id(practice, &message.message_id).await? {
                    Some(earlier) if earlier.id != message.id => Ok(Some(Receipt {
                        code: ItkCode::Duplicate.code(),
                        outcome: ItkCode::Duplicate,
                        id: Some(earlier.id),
                        message_id: earlier.message_id.clone(),
                        problems: vec![duplicate_problem(&earlier)],
                    })),
                    _ => Err(AppError::Conflict(why.to_string())),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The earlier message's task, closed with this outcome (a stand-in when it had none).
    async fn closing(
        &self,
        practice: PracticeId,
        e: &InboundMessage,
        now: DateTime<Utc>,
        outcome: &str,
    ) -> AppResult<Task> {
        let mut t = match e.task {
            Some(t) => self.store.task(practice, t).await?,
            None => None,
        };
        if let Some(t) = t.as_mut() {
            t.status = TaskStatus::Done;
            t.outcome = Some(outcome.to_owned());
            t.closed_at = Some(now);
            t.closed_by = Some("GP Connect Update Record".into());
        }
        Ok(t.unwrap_or_else(|| placeholder_task(e, now)))
    }

    /// For a message that could not be read whole: the earlier payload it says it replaces,
    /// with that payload's task closed, when the replacement can void it — the earlier one was
    /// sent by the same pharmacy (its credentials, or for the inbox the registered sender the
    /// message names), is about the same NHS number, and still waits (R28).
    async fn voided_by(
        &self,
        practice: PracticeId,
        sender: Option<&Sender>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> AppResult<Option<(InboundMessage, Task)>> {
        let claims = caldicott_fhir::update_record::claims(body);
        let Some(target) = claims.replaces else { return Ok(None) };
        let sender_ods = match sender {
            Some(s) => s.ods_code.clone(),
            None => match claims.sender_ods {
                Some(ods) if self.store.sender_by_ods(practice, &ods).await?.is_some_and(|s| s.active) => ods,
                _ => return Ok(None),
            },
        };
        let Some(e) = self.store.inbound_named(practice, &target).await? else { return Ok(None) };
        let same_patient =
            e.record.as_ref().is_some_and(|r| claims.nhs_number.as_deref() == Some(r.nhs_number.as_str()));
        if !e.sender_ods.eq_ignore_ascii_case(&sender_ods)
            || !same_patient
            || !matches!(e.status, InboundStatus::Pending | InboundStatus::Unmatched)
        {
            return Ok(None);
        }
        let task = self
            .closing(
                practice,
                &e,
                now,
                "Void: the pharmacy's replacement could not be processed; the pharmacy was told",
            )
            .await?;
        Ok(Some((e, task)))
    }

    // ---- Reviewing ---------------------------------------------------------------------------

    /// Messages to review and those that cannot be matched to a patient.
    pub async fn inbound_queue(&self, who: &StaffPrincipal) -> AppResult<(Vec<InboundListing>, Vec<InboundListing>)> {
        permit(who, Permission::SeePharmacyMessages)?;
        let all = self.store.inbound_list(who.practice, &[InboundStatus::Pending, InboundStatus::Unmatched]).await?;
        self.audit_look(who, None, Action::InboundListView, "inbound-queue", format!("messages={}", all.len())).await?;
        Ok(all.into_iter().partition(|m| m.status == InboundStatus::Pending))
    }

    /// Messages already decided or refused, newest first, for the log.
    pub async fn inbound_log(&self, who: &StaffPrincipal) -> AppResult<Vec<InboundListing>> {
        permit(who, Permission::SeePharmacyMessages)?;
        let mut all = self
            .store
            .inbound_list(
                who.practice,
                &[
                    InboundStatus::Filed,
                    InboundStatus::Rejected,
                    InboundStatus::Superseded,
                    InboundStatus::Void,
                    InboundStatus::Invalid,
                    InboundStatus::Refused,
                ],
            )
            .await?;
        all.reverse();
        all.truncate(200);
        self.audit_look(who, None, Action::InboundListView, "inbound-log", format!("messages={}", all.len())).await?;
        Ok(all)
    }

    /// One message with what changed; audited as a look at the patient's data.
    pub async fn inbound_view(&self, who: &StaffPrincipal, id: Uuid) -> AppResult<InboundView> {
        permit(who, Permission::SeePharmacyMessages)?;
        let message = self
            .store
            .inbound(who.practice, id)
            .await?
            .ok_or_else(|| AppError::NotFound("no such pharmacy message here".into()))?;
        let record = message
            .record
            .clone()
            .ok_or_else(|| AppError::NotFound("that message was refused and has no consultation to show".into()))?;
        let amendments = self.store.amendments(who.practice, id).await?;
        let replaces = match message.replaces {
            Some(r) => self.store.inbound(who.practice, r).await?,
            None => None,
        };
        let changes_from_filed = match &replaces {
            Some(r) if r.status == InboundStatus::Filed => item_changes(&r.items, &message.items),
            _ => Vec::new(),
        };
        let a = self.audit_record(
            who,
            message.patient,
            Action::InboundView,
            format!("inbound/{id}"),
            Outcome::Success,
            String::new(),
        );
        let to_file = planned_entries(&record, &message.items);
        let patient = match message.patient {
            Some(p) => self.store.patient(who.practice, p).await?,
            None => None,
        };
        let practice = self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let entry_check = match &patient {
            Some(p)
                if message.status == InboundStatus::Pending
                    && !record.nopat
                    && practice.online.visible_online_by_default =>
            {
                let now = self.now();
                let entries: Vec<Entry> = to_file
                    .iter()
                    .map(|(code, body)| Entry {
                        id: EntryId::from_uuid(new_id()),
                        patient: p.id,
                        event_date: record.consultation_date,
                        entered_at: now,
                        author: Author { staff: None, name: record.pharmacist.clone() },
                        origin: Origin::Inbound { sender_ods: record.sender_ods.clone() },
                        code: code.clone(),
                        body: body.clone(),
                        visibility: OnlineVisibility::Visible,
                        nopat: false,
                        safeguarding: false,
                        confidential: false,
                        superseded: None,
                    })
                    .collect();
                self.entry_check(practice, p.clone(), &entries).await?
            }
            _ => None,
        };
        self.audit.record(who.practice, a).await?;
        Ok(InboundView { message, record, amendments, changes_from_filed, replaces, to_file, patient, entry_check })
    }

    /// Removes an item or changes its code before filing (R26); kept with who and when.
    pub async fn amend_inbound(
        &self,
        who: &StaffPrincipal,
        id: Uuid,
        change: &Amend,
    ) -> AppResult<Result<(), Vec<FieldProblem>>> {
        permit(who, Permission::DecidePharmacyMessages)?;
        let message = self.waiting(who, id).await?;
        let mut items = message.items.clone();
        let (index, words) = match change {
            Amend::Remove { item } => {
                let Some(it) = items.get(*item).cloned() else { return Err(AppError::NotFound("no such item".into())) };
                items.remove(*item);
                (*item, format!("removed {} {}", it.kind.display(), it.describe()))
            }
            Amend::Recode { item, code, term } => {
                let Some(it) = items.get_mut(*item) else { return Err(AppError::NotFound("no such item".into())) };
                let before = it.describe();
                if code.trim().is_empty() {
                    it.code = None;
                    if it.text.is_empty() {
                        it.text = before.clone();
                    }
                } else {
                    let Ok(concept) = ConceptId::parse(code.trim()) else {
                        return Ok(Err(vec![FieldProblem {
                            field: "code",
                            message: format!("\"{}\" is not a SNOMED CT concept id (6 to 18 digits)", code.trim()),
                        }]));
                    };
                    if term.trim().is_empty() || term.len() > 255 {
                        return Ok(Err(vec![FieldProblem { field: "term", message: "Enter the code's term".into() }]));
                    }
                    it.code = Some(Coding { concept, term: term.trim().to_owned() });
                }
                (*item, format!("changed {} from {before} to {}", it.kind.display(), it.describe()))
            }
        };
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let amendment = Amendment { at: now, by: who.name.clone(), change: words.clone(), items };
        let a = self.audit_record(
            who,
            message.patient,
            Action::InboundAmend,
            format!("inbound/{id}"),
            Outcome::Success,
            format!("item={index} {words}"),
        );
        self.store.amend_inbound(who.practice, id, &amendment, &a).await?;
        Ok(Ok(()))
    }

    /// Files a message with one click: one entry per item that remains, each citing its source
    /// message, hidden online when the Encounter carried NOPAT (R29), otherwise following the
    /// practice's "visible online" default (D8).
    pub async fn file_inbound(&self, who: &StaffPrincipal, id: Uuid) -> AppResult<Vec<EntryId>> {
        self.file_inbound_as(who, id, None).await
    }

    /// Files a waiting message, hidden online with a reason and note when `hide` says so (the
    /// entry-time check on the review page offers it); what the redaction assistant found and
    /// what was chosen are audited with the filing.
    pub async fn file_inbound_as(
        &self,
        who: &StaffPrincipal,
        id: Uuid,
        hide: Option<(HiddenReason, String)>,
    ) -> AppResult<Vec<EntryId>> {
        permit(who, Permission::DecidePharmacyMessages)?;
        let message = self.waiting(who, id).await?;
        let record = message.record.clone().ok_or_else(|| AppError::Conflict("nothing to file".into()))?;
        let patient = message.patient.ok_or_else(|| AppError::Conflict("the message has no patient".into()))?;
        let practice = self.store.practice(who.practice).await?.ok_or_else(|| AppError::NotFound("practice".into()))?;
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let source = format!(
            "{}, {} ({}): GP Connect Update Record message {}",
            nonempty(&record.pharmacist, "pharmacist"),
            nonempty(&record.sender_name, &record.sender_ods),
            record.sender_ods,
            record.message_id
        );
        let visibility = if let Some((reason, note)) = &hide {
            OnlineVisibility::Hidden(
                Redaction::new(*reason, note, &who.name, now).map_err(|e| AppError::BadRequest(e.to_string()))?,
            )
        } else if record.nopat || practice.online.visible_online_by_default {
            OnlineVisibility::Visible
        } else {
            OnlineVisibility::Hidden(
                Redaction::new(
                    HiddenReason::Other,
                    "practice default for inbound data: not visible online",
                    &who.name,
                    now,
                )
                .map_err(|e| AppError::Internal(e.to_string()))?,
            )
        };
        let entry = |code: Option<Coding>, body: EntryBody| Entry {
            id: EntryId::from_uuid(new_id()),
            patient,
            event_date: record.consultation_date,
            entered_at: now,
            author: Author { staff: None, name: source.clone() },
            origin: Origin::Inbound { sender_ods: record.sender_ods.clone() },
            code,
            body,
            visibility: visibility.clone(),
            nopat: record.nopat,
            safeguarding: false,
            confidential: false,
            superseded: None,
        };
        let entries: Vec<Entry> =
            planned_entries(&record, &message.items).into_iter().map(|(code, body)| entry(code, body)).collect();
        // A replacement of a payload already filed retires what that one filed (R28): kept for
        // audit, marked superseded, each change audited with the filing.
        let retire = match message.replaces {
            Some(r) => match self.store.inbound(who.practice, r).await? {
                Some(e) if e.status == InboundStatus::Filed => {
                    let retired = self.store.inbound_entries(who.practice, e.id).await?;
                    let note = format!(
                        "Superseded by GP Connect Update Record message {} from {} ({}), filed by {} on {}",
                        record.message_id,
                        nonempty(&record.sender_name, &record.sender_ods),
                        record.sender_ods,
                        who.name,
                        now.format("%-d %B %Y")
                    );
                    let audits = retired
                        .iter()
                        .map(|entry| {
                            self.audit_record(
                                who,
                                Some(patient),
                                Action::EntrySupersede,
                                format!("entry/{entry}"),
                                Outcome::Success,
                                format!("superseded_by=inbound/{id} replaced=inbound/{}", e.id),
                            )
                        })
                        .collect();
                    Some(Retire { entries: retired, at: now, note, audits })
                }
                _ => None,
            },
            None => None,
        };
        let task = self
            .closed_task(
                who,
                &message,
                now,
                &match entries.len() {
                    1 => "Filed: 1 entry".to_owned(),
                    n => format!("Filed: {n} entries"),
                },
            )
            .await?;
        let a = self.audit_record(
            who,
            Some(patient),
            Action::InboundFile,
            format!("inbound/{id}"),
            Outcome::Success,
            format!(
                "entries={} nopat={} {}{}",
                entries.len(),
                record.nopat,
                entries.iter().map(|e| format!("entry/{}", e.id)).collect::<Vec<_>>().join(" "),
                if record.nopat {
                    String::new()
                } else {
                    // The review page shows the check whenever the entries would be visible.
                    let found = crate::entry_check::highlights_of(&entries, self.today());
                    let visible = matches!(entries.first().map(|e| &e.visibility), Some(OnlineVisibility::Visible));
                    crate::entry_check::EntryCheck::audit_text(&found, visible, visible)
                }
            ),
        );
        self.store
            .decide_inbound(
                who.practice,
                id,
                InboundDecision { status: InboundStatus::Filed, note: "", by: &who.name, at: now },
                &entries,
                retire.as_ref(),
                task.as_ref(),
                &a,
            )
            .await?;
        Ok(entries.into_iter().map(|e| e.id).collect())
    }

    /// Rejects a message: nothing is filed, the sender is not told, the reason is kept (R27).
    pub async fn reject_inbound(
        &self,
        who: &StaffPrincipal,
        id: Uuid,
        reason: &str,
    ) -> AppResult<Result<(), Vec<FieldProblem>>> {
        permit(who, Permission::DecidePharmacyMessages)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 1000 {
            return Ok(Err(vec![FieldProblem { field: "reason", message: "Say why the message is rejected".into() }]));
        }
        // A message waiting for review, or one no patient here matches (closed as not ours).
        let message = self.waiting_in(who, id, &[InboundStatus::Pending, InboundStatus::Unmatched]).await?;
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let task = self.closed_task(who, &message, now, "Rejected: nothing filed").await?;
        let a = self.audit_record(
            who,
            message.patient,
            Action::InboundReject,
            format!("inbound/{id}"),
            Outcome::Success,
            format!("reason={reason:?}"),
        );
        self.store
            .decide_inbound(
                who.practice,
                id,
                InboundDecision { status: InboundStatus::Rejected, note: reason, by: &who.name, at: now },
                &[],
                None,
                task.as_ref(),
                &a,
            )
            .await?;
        Ok(Ok(()))
    }

    /// Tries again to match a message held apart because no registered patient matched it (the
    /// patient has registered since, or the registration was corrected), by the same rule as on
    /// arrival: NHS number and date of birth, registered here today. Matched, it waits for review
    /// with its task, as if it had just arrived; still unmatched, the answer says why and nothing
    /// changes. Clinicians only, audited.
    pub async fn match_inbound_again(&self, who: &StaffPrincipal, id: Uuid) -> AppResult<Result<PatientId, String>> {
        permit(who, Permission::DecidePharmacyMessages)?;
        let m = self.waiting_in(who, id, &[InboundStatus::Unmatched]).await?;
        let record =
            m.record.as_ref().ok_or_else(|| AppError::Conflict("the message holds no summary to match".into()))?;
        let today = self.today();
        let found = self.store.patient_by_nhs_number(who.practice, &record.nhs_number).await?;
        let patient = match found {
            Some(p) if p.date_of_birth != record.birth_date => {
                return Ok(Err(format!(
                    "The patient with NHS number {} here was born on {}, but the pharmacy says {}. Ask the pharmacy to \
                     check and send it again, or correct the registration if it is wrong.",
                    record.nhs_number.as_str(),
                    p.date_of_birth.format("%-d %B %Y"),
                    record.birth_date.format("%-d %B %Y")
                )))
            }
            Some(p) if p.registration_on(today).is_none() => {
                return Ok(Err(format!(
                    "The patient with NHS number {} is not registered here today.",
                    record.nhs_number.as_str()
                )))
            }
            Some(p) => p,
            None => {
                return Ok(Err(format!(
                    "No patient with NHS number {} is registered here yet.",
                    record.nhs_number.as_str()
                )))
            }
        };
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let task = review_task(patient.id, m.id, record, now, m.replaces.is_some());
        let a = self.audit_record(
            who,
            Some(patient.id),
            Action::InboundMatch,
            format!("inbound/{id}"),
            Outcome::Success,
            format!("matched to patient/{} on staff request", patient.id),
        );
        self.store.match_inbound(who.practice, id, patient.id, &task, &a).await.map_err(|e| match e {
            caldicott_store::StoreError::Conflict(c) => AppError::Conflict(c.to_string()),
            other => other.into(),
        })?;
        Ok(Ok(patient.id))
    }

    async fn waiting(&self, who: &StaffPrincipal, id: Uuid) -> AppResult<InboundMessage> {
        self.waiting_in(who, id, &[InboundStatus::Pending]).await
    }

    /// The message, when its status is one of `statuses`; otherwise a conflict saying where it
    /// stands.
    async fn waiting_in(
        &self,
        who: &StaffPrincipal,
        id: Uuid,
        statuses: &[InboundStatus],
    ) -> AppResult<InboundMessage> {
        let m = self
            .store
            .inbound(who.practice, id)
            .await?
            .ok_or_else(|| AppError::NotFound("no such pharmacy message here".into()))?;
        if !statuses.contains(&m.status) {
            let words = if statuses.contains(&InboundStatus::Pending) {
                "this message is no longer waiting for review"
            } else {
                "this message has already been dealt with"
            };
            return Err(AppError::Conflict(format!("{words} ({})", m.status.display())));
        }
        Ok(m)
    }

    async fn closed_task(
        &self,
        who: &StaffPrincipal,
        m: &InboundMessage,
        now: DateTime<Utc>,
        outcome: &str,
    ) -> AppResult<Option<Task>> {
        let Some(id) = m.task else { return Ok(None) };
        let Some(mut t) = self.store.task(who.practice, id).await? else { return Ok(None) };
        t.status = TaskStatus::Done;
        t.outcome = Some(outcome.to_owned());
        t.closed_at = Some(now);
        t.closed_by = Some(who.name.clone());
        Ok(Some(t))
    }
}

fn nonempty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.trim().is_empty() {
        b
    } else {
        a
    }
}

/// A stand-in for an earlier message that had no task (it could not be matched): closing it
/// changes nothing, as no open task has its id.
fn placeholder_task(m: &InboundMessage, now: DateTime<Utc>) -> Task {
    Task {
        id: TaskId::from_uuid(new_id()),
        patient: m.patient.unwrap_or_else(|| caldicott_core::ids::PatientId::from_uuid(Uuid::nil())),
        kind: TaskKind::PharmacyUpdate,
        status: TaskStatus::Done,
        created_at: now,
        requested_by: String::new(),
        body: TaskBody::Inbound { message: m.id, summary: String::new() },
        outcome: Some("Replaced by a later message".into()),
        closed_at: Some(now),
        closed_by: Some("GP Connect Update Record".into()),
    }
}

/// The items of a message, for JSON and tests.
pub fn items_of(m: &InboundMessage) -> &[InboundItem] {
    &m.items
}

/// What happened to one file of the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxFile {
    pub path: std::path::PathBuf,
    pub receipt: Result<Receipt, String>,
}

impl App {
    /// Takes every `*.json` file in `inbox/<practice ODS code>/`, as a mailbox transport
    /// delivers them: each is received like a message over HTTP, then moved to `processed/`
    /// with its ITK3 acknowledgement beside it (`<name>.ack.json`), or to `failed/` when it
    /// could not be read or names no practice here. Nothing is lost or read twice.
    ///
    /// Only real folders and regular files are read: a symbolic link (to a file or a folder,
    /// inside or outside the inbox), a pipe, a device or a folder named `*.json` is never
    /// followed or opened. Such an entry named `*.json` is moved aside to `failed/` (the link
    /// itself, not what it points to) with an acknowledgement saying why; a linked practice
    /// folder is left where it is and reported in the log.
    pub async fn process_update_record_inbox(&self, inbox: &std::path::Path) -> AppResult<Vec<InboxFile>> {
        let mut out = Vec::new();
        let Ok(dirs) = std::fs::read_dir(inbox) else { return Ok(out) };
        let mut dirs: Vec<_> = dirs
            .filter_map(Result::ok)
            .filter(|d| match d.file_type() {
                // `DirEntry::file_type` does not follow links.
                Ok(t) if t.is_dir() => true,
                Ok(t) if t.is_symlink() => {
                    tracing::warn!(path = %d.path().display(), "a symbolic link in the Update Record inbox is not followed");
                    false
                }
                _ => false,
            })
            .collect();
        dirs.sort_by_key(|d| d.file_name());
        for dir in dirs {
            let ods_name = dir.file_name().to_string_lossy().into_owned();
            let practice = match caldicott_core::practice::OdsCode::parse(&ods_name) {
                Ok(ods) => self.store.practice_by_ods(&ods).await?,
                Err(_) => None,
            };
            let mut files: Vec<_> = std::fs::read_dir(dir.path())
                .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
                .unwrap_or_default();
            files.retain(|p| p.extension().is_some_and(|e| e == "json"));
            files.sort();
            for path in files {
                let receipt = match (&practice, regular_file(&path)) {
                    (_, Err(e)) => Err(e),
                    (None, Ok(())) => Err(format!("no practice with ODS code {ods_name} is served here")),
                    (Some(p), Ok(())) => match read_limited(&path) {
                        Ok(bytes) => self.receive_update_file(p.id, &bytes).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    },
                };
                let target = dir.path().join(if receipt.is_ok() { "processed" } else { "failed" });
                move_with_ack(&path, &target, &receipt).map_err(AppError::Internal)?;
                out.push(InboxFile { path, receipt });
            }
        }
        Ok(out)
    }
}

/// Whether `path` is a regular file itself (not a link to one, not a folder, pipe or device).
fn regular_file(path: &std::path::Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) if m.file_type().is_symlink() => Err("refused: a symbolic link, not a file; it was not followed".into()),
        Ok(_) => Err("refused: not a regular file".into()),
        Err(e) => Err(format!("the file could not be read: {e}")),
    }
}

/// Reads a regular file, at most one byte past the message limit. The file opened must be the
/// very file checked (same device and inode): one swapped for a link in between is refused.
fn read_limited(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| format!("the file could not be read: {e}");
    let checked = std::fs::symlink_metadata(path).map_err(unreadable)?;
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let opened = file.metadata().map_err(unreadable)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if !checked.file_type().is_file() || (checked.dev(), checked.ino()) != (opened.dev(), opened.ino()) {
            return Err("refused: the file changed while it was being read".into());
        }
    }
    #[cfg(not(unix))]
    if !checked.file_type().is_file() || !opened.is_file() {
        return Err("refused: not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_MESSAGE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    Ok(bytes)
}

fn move_with_ack(
    path: &std::path::Path,
    dir: &std::path::Path,
    receipt: &Result<Receipt, String>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("making {}: {e}", dir.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let ack = match receipt {
        Ok(r) => serde_json::to_string_pretty(r).unwrap_or_default(),
        Err(e) => serde_json::json!({ "error": e }).to_string(),
    };
    std::fs::write(dir.join(format!("{name}.ack.json")), ack)
        .map_err(|e| format!("writing the acknowledgement: {e}"))?;
    std::fs::rename(path, dir.join(&name)).map_err(|e| format!("moving {}: {e}", path.display()))
}

/// The task that puts a matched message in front of the practice for review (R26).
fn review_task(
    patient: PatientId,
    message: Uuid,
    record: &UpdateRecord,
    now: DateTime<Utc>,
    replacement: bool,
) -> Task {
    Task {
        id: TaskId::from_uuid(new_id()),
        patient,
        kind: TaskKind::PharmacyUpdate,
        status: TaskStatus::Open,
        created_at: now,
        requested_by: format!(
            "{} ({}), GP Connect Update Record",
            nonempty(&record.sender_name, &record.sender_ods),
            record.sender_ods
        ),
        body: TaskBody::Inbound {
            message,
            summary: format!(
                "{} on {}{}",
                record.service,
                record.consultation_date.format("%-d %B %Y"),
                if replacement { " (a replacement)" } else { "" }
            ),
        },
        outcome: None,
        closed_at: None,
        closed_by: None,
    }
}

/// Why a message is a duplicate, for the sender: when the first copy arrived (ISO 8601, UTC).
fn duplicate_problem(earlier: &InboundMessage) -> String {
    format!(
        "message {} was received on {}",
        earlier.message_id,
        earlier.received_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}
