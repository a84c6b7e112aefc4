//! Staff instant messages (R43): to a person or a team, kept for good. "Delete" hides a message
//! from its participants and records who deleted it and when; messages about a patient stay on
//! the patient's communications tab (staff only, never online) and in subject access searches.

use crate::permit;
use crate::settings::FieldProblem;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, Outcome};
use caldicott_core::ids::StaffId;
use caldicott_core::patient::Patient;
use caldicott_core::permissions::Permission;
use caldicott_core::NhsNumber;
use uuid::Uuid;

pub use caldicott_store::chat::StaffMessage;

/// The teams a message can go to: a role's name, or everyone.
pub const TEAMS: [(&str, &str); 4] = [
    ("everyone", "Everyone at the practice"),
    ("clinician", "Clinicians"),
    ("receptionist", "Reception"),
    ("practice_manager", "Practice management"),
];

/// A message as typed.
#[derive(Debug, Clone, Default)]
pub struct Compose {
    /// "staff:<id>" or "team:<name>".
    pub to: String,
    pub body: String,
    /// The patient to link it to (NHS number), when chosen.
    pub patient: String,
    /// The sender's answer to "link it to this patient?": None when not asked yet.
    pub link: Option<bool>,
    /// The patient on screen when the message was written (its NHS number), if any.
    pub on_screen: String,
}

/// What sending did.
#[derive(Debug, Clone)]
pub enum Sent {
    Sent(StaffMessage),
    /// The message names a patient (an NHS number in it, or the patient on screen): the sender
    /// is asked whether to link it before it goes.
    AskToLink(Patient),
}

/// NHS numbers written in a text (ten digits, spaces allowed), valid by the check digit.
pub fn nhs_numbers_in(text: &str) -> Vec<NhsNumber> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let mut digits = String::new();
            let mut j = i;
            while j < chars.len() && digits.len() < 10 && (chars[j].is_ascii_digit() || chars[j] == ' ') {
                if chars[j].is_ascii_digit() {
                    digits.push(chars[j]);
                }
                j += 1;
            }
            let ends_clean = j >= chars.len() || !chars[j].is_ascii_alphanumeric();
            if digits.len() == 10 && ends_clean {
                if let Ok(n) = NhsNumber::parse(&digits) {
                    if !out.contains(&n) {
                        out.push(n);
                    }
                }
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out
}

impl App {
    /// Sends a message, or asks first whether to link it to the patient it names.
    pub async fn send_staff_message(
        &self,
        who: &StaffPrincipal,
        c: &Compose,
    ) -> AppResult<Result<Sent, Vec<FieldProblem>>> {
        permit(who, Permission::MessageTheTeam)?;
        let mut problems = Vec::new();
        let body = c.body.trim();
        if body.is_empty() || body.chars().count() > 2000 {
            problems.push(FieldProblem { field: "body", message: "Write a message of up to 2,000 characters".into() });
        }
        let (to_staff, to_team) = match c.to.split_once(':') {
            Some(("staff", id)) => match id.parse::<StaffId>() {
                Ok(id) => match self.store.staff_member(who.practice, id).await? {
                    Some(m) if m.active => (Some(m.id), None),
                    _ => {
                        problems.push(FieldProblem { field: "to", message: "Choose someone at this practice".into() });
                        (None, None)
                    }
                },
                Err(_) => {
                    problems.push(FieldProblem { field: "to", message: "Choose someone at this practice".into() });
                    (None, None)
                }
            },
            Some(("team", t)) if TEAMS.iter().any(|(k, _)| *k == t) => (None, Some(t.to_owned())),
            _ => {
                problems.push(FieldProblem { field: "to", message: "Choose who the message is for".into() });
                (None, None)
            }
        };
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        let find = |nhs: &str| {
            let store = self.store.clone();
            let nhs = nhs.to_owned();
            let practice = who.practice;
            async move {
                match NhsNumber::parse(&nhs) {
                    Ok(n) => store.patient_by_nhs_number(practice, &n).await,
                    Err(_) => Ok(None),
                }
            }
        };
        let patient = match c.link {
            Some(true) => match find(&c.patient).await? {
                Some(p) => Some(p),
                None => {
                    return Ok(Err(vec![FieldProblem {
                        field: "patient",
                        message: "That patient is not registered here".into(),
                    }]))
                }
            },
            Some(false) => None,
            None => {
                // Ask before sending when the message names a patient of this practice.
                let mut named = None;
                if !c.on_screen.trim().is_empty() {
                    named = find(&c.on_screen).await?;
                }
                if named.is_none() {
                    for n in nhs_numbers_in(body) {
                        if let Some(p) = self.store.patient_by_nhs_number(who.practice, &n).await? {
                            named = Some(p);
                            break;
                        }
                    }
                }
                if let Some(p) = named {
                    return Ok(Ok(Sent::AskToLink(p)));
                }
                None
            }
        };
        let message = StaffMessage {
            id: new_id(),
            sender: who.staff,
            sender_name: who.name.clone(),
            to_staff,
            to_team,
            body: body.to_owned(),
            patient: patient.as_ref().map(|p| p.id),
            sent_at: caldicott_core::audit::truncate_to_micros(self.now()),
            deleted_at: None,
            deleted_by: None,
        };
        let audit = self.audit_record(
            who,
            message.patient,
            Action::StaffMessageSend,
            format!("staff_message/{}", message.id),
            Outcome::Success,
            match (&message.to_staff, &message.to_team) {
                (Some(s), _) => format!("to=staff/{s}"),
                (_, Some(t)) => format!("to=team/{t}"),
                _ => String::new(),
            },
        );
        self.store.send_staff_message(who.practice, &message, &audit).await?;
        Ok(Ok(Sent::Sent(message)))
    }

    /// Who a message can go to: the practice team's active members, by name.
    pub async fn chat_recipients(&self, who: &StaffPrincipal) -> AppResult<Vec<(StaffId, String)>> {
        permit(who, Permission::MessageTheTeam)?;
        let mut all: Vec<(StaffId, String)> = self
            .store
            .staff_members(who.practice)
            .await?
            .into_iter()
            .filter(|m| m.active && m.role.works_with_patients())
            .map(|m| (m.id, format!("{} ({})", m.display_name, m.role.display())))
            .collect();
        all.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(all)
    }

    /// The caller's messages (to them, their team, everyone, or from them), newest first, with
    /// whether they have read each; `search` keeps those whose words contain it.
    pub async fn staff_inbox(&self, who: &StaffPrincipal, search: &str) -> AppResult<Vec<(StaffMessage, bool)>> {
        permit(who, Permission::MessageTheTeam)?;
        let all = self.store.staff_inbox(who.practice, who.staff, who.role.as_str(), 500).await?;
        let q = search.trim().to_lowercase();
        Ok(if q.is_empty() {
            all.into_iter().take(200).collect()
        } else {
            all.into_iter()
                .filter(|(m, _)| m.body.to_lowercase().contains(&q) || m.sender_name.to_lowercase().contains(&q))
                .collect()
        })
    }

    pub async fn unread_staff_messages(&self, who: &StaffPrincipal) -> AppResult<i64> {
        permit(who, Permission::MessageTheTeam)?;
        Ok(self.store.unread_staff_messages(who.practice, who.staff, who.role.as_str()).await?)
    }

    fn is_participant(who: &StaffPrincipal, m: &StaffMessage) -> bool {
        m.sender == who.staff
            || m.to_staff == Some(who.staff)
            || m.to_team.as_deref() == Some(who.role.as_str())
            || m.to_team.as_deref() == Some("everyone")
    }

    /// One message; reading it marks it read. A message about a patient is a look at their data:
    /// audited.
    pub async fn staff_message(&self, who: &StaffPrincipal, id: Uuid) -> AppResult<(StaffMessage, Option<Patient>)> {
        permit(who, Permission::MessageTheTeam)?;
        let m = self
            .store
            .staff_message(who.practice, id)
            .await?
            .filter(|m| Self::is_participant(who, m) && m.deleted_at.is_none())
            .ok_or_else(|| AppError::NotFound("no such message".into()))?;
        self.store.mark_staff_message_read(who.practice, id, who.staff, self.now()).await?;
        let patient = match m.patient {
            Some(p) => {
                self.audit_look(who, Some(p), Action::StaffMessageView, format!("staff_message/{id}"), String::new())
                    .await?;
                self.store.patient(who.practice, p).await?
            }
            None => None,
        };
        Ok((m, patient))
    }

    /// "Deletes" a message: it leaves the participants' lists but is kept, with who and when.
    pub async fn delete_staff_message(&self, who: &StaffPrincipal, id: Uuid) -> AppResult<()> {
        permit(who, Permission::MessageTheTeam)?;
        let m = self
            .store
            .staff_message(who.practice, id)
            .await?
            .filter(|m| Self::is_participant(who, m))
            .ok_or_else(|| AppError::NotFound("no such message".into()))?;
        let now = caldicott_core::audit::truncate_to_micros(self.now());
        let a = self.audit_record(
            who,
            m.patient,
            Action::StaffMessageDelete,
            format!("staff_message/{id}"),
            Outcome::Success,
            "hidden from participants; kept".to_owned(),
        );
        self.store.delete_staff_message(who.practice, id, &who.name, now, &a).await?;
        Ok(())
    }

    /// Every staff message about a patient, deleted ones included and marked, for the
    /// communications tab (staff only).
    pub async fn staff_messages_about(&self, who: &StaffPrincipal, patient: &Patient) -> AppResult<Vec<StaffMessage>> {
        permit(who, Permission::MessageTheTeam)?;
        Ok(self.store.staff_messages_about(who.practice, patient.id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_are_found_in_words() {
        let found = nhs_numbers_in("Can you call 943 476 5919 back? Not 1234567890 or 94347659190.");
        assert_eq!(found.iter().map(|n| n.as_str()).collect::<Vec<_>>(), vec!["9434765919"]);
        assert!(nhs_numbers_in("Ref 9434765919x").is_empty());
        assert_eq!(nhs_numbers_in("9434765919").len(), 1);
    }
}
