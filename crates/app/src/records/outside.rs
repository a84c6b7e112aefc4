//! The one reader for outside viewers: a patient, a proxy acting for them, or an app on their
//! behalf. [`App::outside_view`] loads the record's facts and has the visibility engine decide
//! for that viewer, once; [`OutsideView`] then reads entries only through the engine, so what
//! it returns is `Shown<…>`; and what it returns is held as [`Unaudited`] until the look is
//! audited, so that no use case can hand a viewer entries without recording that it did.
//!
//! Staff's "view as" preview reads through the same view, so the staff see exactly the page the
//! viewer would get.

use crate::record::{encode_cursor, Loaded};
use crate::{App, AppError, AppResult};
use caldicott_core::access::{IdentityLevel, ProxyLink};
use caldicott_core::audit::AuditRecord;
use caldicott_core::entry::{Entry, Section};
use caldicott_core::ids::{EntryId, PatientId, PracticeId};
use caldicott_core::patient::Patient;
use caldicott_core::visibility::{AccessPolicy, Shown};
use caldicott_store::{EntryCursor, EntryQuery};

/// One outside viewer's view of one record: the facts loaded once and the engine's decision.
pub(crate) struct OutsideView {
    pub(crate) l: Loaded,
    /// The proxy link the viewer acts through, if they are not the patient.
    pub(crate) link: Option<ProxyLink>,
    pub(crate) policy: AccessPolicy,
}

/// What an outside viewer is about to be shown, handed over only once the look is audited.
#[must_use = "what a viewer is shown is handed over only by auditing the look"]
pub(crate) struct Unaudited<T>(T);

impl<T> Unaudited<T> {
    /// Records the look, as the event `event` makes from what is shown, and hands it over. If
    /// the event cannot be written, the viewer gets nothing.
    pub(crate) async fn audited(
        self,
        app: &App,
        practice: PracticeId,
        event: impl FnOnce(&T) -> AuditRecord,
    ) -> AppResult<T> {
        let record = event(&self.0);
        app.audit.record(practice, record).await?;
        Ok(self.0)
    }

    /// For a use case that only checks what the viewer may see and shows them none of it (an
    /// order is checked against the repeats offered): the entries never leave the use case, and
    /// the change it makes is audited on its own. Each use is listed, with its reason, in the
    /// choke point's test.
    pub(crate) fn checked_only(self) -> T {
        self.0
    }

    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Unaudited<U> {
        Unaudited(f(self.0))
    }

    /// Two reads of one look, to be audited as one.
    pub(crate) fn join<U>(self, other: Unaudited<U>) -> Unaudited<(T, U)> {
        Unaudited((self.0, other.0))
    }
}

impl<T> Unaudited<Option<T>> {
    /// Something shown, or `missing()` when there is nothing to show.
    pub(crate) fn ok_or_else(self, missing: impl FnOnce() -> AppError) -> AppResult<Unaudited<T>> {
        self.0.map(Unaudited).ok_or_else(missing)
    }
}

impl<T> Unaudited<AppResult<T>> {
    pub(crate) fn transpose(self) -> AppResult<Unaudited<T>> {
        self.0.map(Unaudited)
    }
}

impl App {
    /// The view of `patient`'s record for a viewer: the patient themselves (no `link`) or the
    /// proxy of `link`, at their best identity level. `missing` is the error for a practice or
    /// patient that is not there, so that a caller can answer as it would for anything unknown.
    pub(crate) async fn outside_view(
        &self,
        practice: PracticeId,
        patient: PatientId,
        link: Option<ProxyLink>,
        identity: Option<IdentityLevel>,
        missing: impl Fn() -> AppError,
    ) -> AppResult<OutsideView> {
        let patient = self.store.patient(practice, patient).await?.ok_or_else(&missing)?;
        self.outside_view_of(patient, link, identity, missing).await
    }

    /// The same, for a patient already read (their practice and access facts are loaded here).
    pub(crate) async fn outside_view_of(
        &self,
        patient: Patient,
        link: Option<ProxyLink>,
        identity: Option<IdentityLevel>,
        missing: impl Fn() -> AppError,
    ) -> AppResult<OutsideView> {
        let p = self.store.practice(patient.practice).await?.ok_or_else(&missing)?;
        let l = self.facts_for(p, patient).await?;
        Ok(self.view_of(l, link, identity))
    }

    /// The view of a record already loaded.
    pub(crate) fn view_of(&self, l: Loaded, link: Option<ProxyLink>, identity: Option<IdentityLevel>) -> OutsideView {
        let policy = self.policy_for(&l, link.as_ref(), identity);
        OutsideView { l, link, policy }
    }
}

impl OutsideView {
    /// One page of the entries the viewer is shown, newest first, and the cursor of the next
    /// page. Withheld entries are skipped without a trace: the page is what it would be without
    /// them.
    pub(crate) async fn page(
        &self,
        app: &App,
        section: Option<Section>,
        mut after: Option<EntryCursor>,
        limit: usize,
    ) -> AppResult<Unaudited<(Vec<Shown<Entry>>, Option<String>)>> {
        let mut shown: Vec<Shown<Entry>> = Vec::with_capacity(limit + 1);
        if self.policy.denied().is_none() {
            // Most pages fill from the first batch (a tenth more than a page, for the entries
            // that are withheld); records with many withheld entries read on in doubling batches.
            let mut scan = limit as u32 + 1 + limit as u32 / 10 + 4;
            'scan: loop {
                let batch = app
                    .store
                    .entries(self.l.practice.id, self.l.patient.id, EntryQuery { section, after, limit: scan })
                    .await?;
                let exhausted = batch.len() < scan as usize;
                for e in batch {
                    after = Some(EntryCursor::of(&e));
                    if let Some(e) = self.policy.show(e) {
                        shown.push(e);
                        if shown.len() > limit {
                            break 'scan;
                        }
                    }
                }
                if exhausted {
                    break;
                }
                scan = (scan * 2).min(1000);
            }
        }
        let next_cursor = if shown.len() > limit {
            shown.truncate(limit);
            shown.last().map(|e| encode_cursor(e))
        } else {
            None
        };
        Ok(Unaudited((shown, next_cursor)))
    }

    /// Every entry of a section (or of the whole record) the viewer is shown, newest first: what
    /// a printout or a saved copy holds.
    pub(crate) async fn all(&self, app: &App, section: Option<Section>) -> AppResult<Unaudited<Vec<Shown<Entry>>>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let Unaudited((shown, next)) = self.page(app, section, after, 500).await?;
            all.extend(shown);
            match next {
                Some(c) => after = Some(crate::record::decode_cursor(&c)?),
                None => return Ok(Unaudited(all)),
            }
        }
    }

    /// One entry of this record, if the viewer is shown it; any other (withheld, another
    /// patient's, not there) is `None`, alike.
    pub(crate) async fn entry(&self, app: &App, id: EntryId) -> AppResult<Unaudited<Option<Shown<Entry>>>> {
        let e = app.store.entry(self.l.practice.id, id).await?.filter(|e| e.patient == self.l.patient.id);
        Ok(Unaudited(e.and_then(|e| self.policy.show(e))))
    }

    /// Every current repeat template the viewer may order online (`AccessPolicy::offer_repeat`):
    /// a hidden template is never offered, nor anything to a viewer without record access.
    pub(crate) async fn repeats(&self, app: &App) -> AppResult<Unaudited<Vec<Shown<Entry>>>> {
        let all = app.section_entries(&self.l, Section::Medications).await?;
        Ok(Unaudited(all.into_iter().filter_map(|e| self.policy.offer_repeat(e)).collect()))
    }
}
