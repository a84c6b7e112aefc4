//! Audit writes for reads, committed before the response goes out, with group commit: requests
//! that arrive together share one transaction (and one fsync). No event is ever dropped: if the
//! batch cannot be written, every request in it fails and sends no patient data (T15).
//!
//! Changes to a record do not come through here: their events are written by the store in the
//! same transaction as the change.

use crate::{AppError, AppResult};
use caldicott_core::audit::{AuditRecord, ChainBreak, ChainHead, ChainVerifier};
use caldicott_core::ids::PracticeId;
use caldicott_store::Store;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

const MAX_BATCH: usize = 256;

type Pending = (PracticeId, AuditRecord, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Pending>,
}

impl AuditWriter {
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Pending>(4096);
        tokio::spawn(async move {
            let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let events: Vec<(PracticeId, AuditRecord)> = batch.iter().map(|(p, r, _)| (*p, r.clone())).collect();
                let result = store.append_audit(&events).await.map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, events = events.len(), "audit batch could not be written");
                }
                for (_, _, reply) in batch.drain(..) {
                    let _ = reply.send(result.clone());
                }
            }
        });
        Self { tx }
    }

    /// Records an event and waits until it is durable.
    /// An event made for a request records the request's address here, in the request's own
    /// task, since the batch is written from the writer's task.
    pub async fn record(&self, practice: PracticeId, mut record: AuditRecord) -> AppResult<()> {
        if record.client.is_none() {
            record.client = caldicott_store::client::current();
        }
        let (reply, done) = oneshot::channel();
        self.tx
            .send((practice, record, reply))
            .await
            .map_err(|_| AppError::Unavailable("the audit log is not accepting events".into()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AppError::Unavailable(format!("the audit log could not be written: {e}"))),
            Err(_) => Err(AppError::Unavailable("the audit log stopped".into())),
        }
    }
}

/// Checks a practice's whole chain against the store's own head and any checkpoints given.
pub async fn verify_chain(
    store: &dyn Store,
    practice: PracticeId,
    checkpoints: &[ChainHead],
) -> AppResult<Result<ChainHead, ChainBreak>> {
    let stored_head = store.audit_head(practice).await?;
    let mut all = checkpoints.to_vec();
    all.push(stored_head);
    let mut verifier = ChainVerifier::new(all);
    let mut after = 0;
    loop {
        let page = store.audit_events(practice, after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            if let Err(b) = verifier.push(e) {
                return Ok(Err(b));
            }
        }
    }
    Ok(verifier.finish())
}
