//! One writer task commits ingest batches: requests queue their scrubbed batch on a bounded
//! channel and wait for the commit; the writer takes everything queued (up to a cap) and writes
//! it in one transaction, so many envelopes share one fsync. A full queue is a `429`, never
//! unbounded memory.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use updraft_store::health::{IngestBatch, IngestOutcome};
use updraft_store::MetaStore;

const MAX_GROUP: usize = 512;

struct Job {
    app: String,
    batch: IngestBatch,
    reply: oneshot::Sender<Result<IngestOutcome, ()>>,
}

pub struct Writer {
    tx: mpsc::Sender<Job>,
    rx: Mutex<Option<mpsc::Receiver<Job>>>,
}

pub enum SubmitError {
    /// The queue is full: try again shortly.
    Busy,
    /// The write failed (logged).
    Failed,
}

impl Writer {
    pub fn new(queue: usize) -> Self {
        let (tx, rx) = mpsc::channel(queue.max(1));
        Self { tx, rx: Mutex::new(Some(rx)) }
    }

    /// Queues a batch and waits until it is committed. The writer task starts on first use.
    pub async fn submit(&self, store: &Arc<dyn MetaStore>, app: String, batch: IngestBatch) -> Result<IngestOutcome, SubmitError> {
        if let Some(rx) = self.rx.lock().expect("writer receiver").take() {
            tokio::spawn(run(store.clone(), rx));
        }
        let (reply, done) = oneshot::channel();
        self.tx.try_send(Job { app, batch, reply }).map_err(|_| SubmitError::Busy)?;
        done.await.map_err(|_| SubmitError::Failed)?.map_err(|_| SubmitError::Failed)
    }
}

async fn run(store: Arc<dyn MetaStore>, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.recv().await {
        jobs.push(first);
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let batches: Vec<(String, IngestBatch)> =
            jobs.iter_mut().map(|j| (std::mem::take(&mut j.app), std::mem::take(&mut j.batch))).collect();
        match store.write_ingest(&batches).await {
            Ok(outs) => {
                for (job, out) in jobs.drain(..).zip(outs) {
                    let _ = job.reply.send(Ok(out));
                }
            }
            Err(e) if batches.len() > 1 => {
                // One bad batch must not fail the others: write each alone.
                tracing::warn!(error = %e, batches = batches.len(), "grouped ingest write failed; writing one by one");
                for (job, b) in jobs.drain(..).zip(batches) {
                    let res = store.write_ingest(std::slice::from_ref(&b)).await;
                    if let Err(e) = &res {
                        tracing::error!(error = %e, app = %b.0, "ingest write failed");
                    }
                    let _ = job.reply.send(res.map(|mut o| o.pop().unwrap_or_default()).map_err(|_| ()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "ingest write failed");
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(()));
                }
            }
        }
    }
}
