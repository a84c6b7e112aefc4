//! The redaction assistant at entry time. The guidance asks clinicians to redact as information
//! is entered, before it becomes visible, not only when a record is reviewed for access. When a
//! consultation is saved, or a result or letter filed, visible online, the assistant
//! (`core::governance::assist`) reads it; if it names a third party or touches a sensitive
//! subject, the form says so, and who will see it online and from when (the patient, each proxy
//! by name), and offers to hide it with a reason. It never stops the save; what was shown and
//! what was chosen go into the audit event of the save.

use crate::record::Loaded;
use crate::{App, AppResult};
use caldicott_core::entry::{Entry, OnlineVisibility};
use caldicott_core::governance::assist;
use caldicott_core::patient::Patient;
use caldicott_core::practice::Practice;
use caldicott_core::visibility::Decision;

/// Whether one person who looks online would see the entry, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onlooker {
    /// "Leo Rivers (the patient)", "Hannah Rivers (mother)".
    pub who: String,
    /// `None`: they will see it online as soon as it is saved; `Some(why)`: they will not.
    pub not_shown: Option<String>,
}

/// What the assistant found in an entry about to become visible online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCheck {
    /// One line each, for the clinician.
    pub highlights: Vec<String>,
    pub onlookers: Vec<Onlooker>,
}

impl EntryCheck {
    /// For the audit event of the save: what was shown and what was chosen.
    pub fn audit_text(found: &[String], shown: bool, visible: bool) -> String {
        if found.is_empty() {
            return String::new();
        }
        format!(
            " entry_check=[{}] shown={} chosen={}",
            found.join("; "),
            if shown { "yes" } else { "no" },
            if visible { "visible" } else { "hidden" }
        )
    }
}

/// The assistant's lines for entries about to be saved or filed visible online.
pub(crate) fn highlights_of(entries: &[Entry], today: chrono::NaiveDate) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in entries {
        let visible = Entry { visibility: OnlineVisibility::Visible, ..e.clone() };
        for h in assist(&visible, today) {
            let line = h.explain();
            if !out.contains(&line) {
                out.push(line);
            }
        }
    }
    out
}

impl App {
    /// The check for `entries` (not yet saved, and as they would be if visible online) in
    /// `patient`'s record: `None` when the assistant finds nothing.
    pub(crate) async fn entry_check(
        &self,
        practice: Practice,
        patient: Patient,
        entries: &[Entry],
    ) -> AppResult<Option<EntryCheck>> {
        let highlights = highlights_of(entries, self.today());
        if highlights.is_empty() {
            return Ok(None);
        }
        let visible: Vec<Entry> =
            entries.iter().map(|e| Entry { visibility: OnlineVisibility::Visible, ..e.clone() }).collect();
        let l: Loaded = self.facts_for(practice, patient).await?;
        let decide = |policy: caldicott_core::visibility::AccessPolicy| -> Option<String> {
            let mut why = None;
            for e in &visible {
                match policy.decide(e) {
                    Decision::Shown => return None,
                    Decision::Withheld(w) => why = Some(w.explain()),
                }
            }
            why
        };
        let name = format!("{} {}", l.patient.name.given, l.patient.name.family);
        let mut onlookers = vec![Onlooker {
            who: format!("{name} (the patient)"),
            not_shown: decide(self.policy_for(&l, None, l.identity)),
        }];
        for (link, who, identity) in self.proxy_viewers(&l).await? {
            onlookers.push(Onlooker { who, not_shown: decide(self.policy_for(&l, Some(&link), identity)) });
        }
        Ok(Some(EntryCheck { highlights, onlookers }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_says_what_was_shown_and_chosen() {
        let found = vec!["Names or refers to other people: daughter".to_owned()];
        assert_eq!(
            EntryCheck::audit_text(&found, true, false),
            " entry_check=[Names or refers to other people: daughter] shown=yes chosen=hidden"
        );
        assert_eq!(EntryCheck::audit_text(&[], true, true), "");
    }
}
