//! The writer: the one thread that appends to the ledger, in batches (group commit).

use std::sync::{Arc, RwLock};

use confide_gov::{Applied, GovError, Governance};
use confide_ledger::{Ledger, Prepared};
use tokio::sync::{mpsc, oneshot};

use crate::now;

/// The most requests appended as one batch.
const MAX_BATCH: usize = 4096;

/// What the writer answers for one request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Durable at `seq`, with what it did.
    Appended { seq: u64, applied: Applied },
    /// Refused; nothing changed.
    Refused(GovError),
    /// The batch could not be made durable; nothing changed.
    Failed(String),
}

/// What to append: a governance request (checked and applied first) or an audit event.
/// A governance request refused after its signer was authenticated is recorded as a
/// `gov.refused` event in its place ([`confide_gov::Refused`]), its nonce spent.
#[derive(Debug)]
enum Entry {
    Governance(Prepared),
    Audit(Prepared),
}

#[derive(Debug)]
struct Job {
    entry: Entry,
    reply: oneshot::Sender<Outcome>,
}

/// Queues requests to the writer.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    tx: mpsc::Sender<Job>,
}

impl Handle {
    /// Submits a governance request and waits until it is durable or refused. The entry is
    /// hashed here, on the caller's thread, not on the writer's.
    pub(crate) async fn submit(&self, cose: Vec<u8>) -> Outcome {
        self.send(Entry::Governance(Prepared::new(cose))).await
    }

    /// Appends an audit event (JSON) and waits until it is durable.
    pub(crate) async fn audit(&self, event: &serde_json::Value) -> Outcome {
        self.send(Entry::Audit(Prepared::new(event.to_string().into_bytes())))
            .await
    }

    async fn send(&self, entry: Entry) -> Outcome {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Job { entry, reply }).await.is_err() {
            return Outcome::Failed("the ledger writer has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Outcome::Failed("the ledger writer has stopped".into()))
    }
}

pub(crate) fn start(ledger: Arc<RwLock<Ledger>>, gov: Arc<RwLock<Governance>>) -> Handle {
    let (tx, mut rx) = mpsc::channel::<Job>(MAX_BATCH);
    std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut jobs = vec![first];
                while jobs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                commit(&ledger, &gov, jobs);
            }
        })
        .map(|_| ())
        .unwrap_or(());
    Handle { tx }
}

/// Checks each job against the state the ones before it leave and applies it, appends the
/// accepted ones as one durable batch, then answers. Both locks are held for the whole batch,
/// so no reader sees a state that is not yet durable; if the append fails, the state is
/// rebuilt from the ledger (which the failed append left as it was).
fn commit(ledger: &RwLock<Ledger>, gov: &RwLock<Governance>, jobs: Vec<Job>) {
    let (Ok(mut gov), Ok(mut ledger)) = (gov.write(), ledger.write()) else {
        for job in jobs {
            let _ = job
                .reply
                .send(Outcome::Failed("the ledger is unavailable".into()));
        }
        return;
    };
    let base = ledger.len();
    let now = now();
    let mut entries = Vec::new();
    // Each reply, with what it answers once the batch is durable.
    let mut waiting: Vec<(oneshot::Sender<Outcome>, Outcome)> = Vec::new();
    for job in jobs {
        let seq = base + entries.len() as u64;
        let (bytes, checked) = match job.entry {
            Entry::Governance(cose) => {
                let checked = gov
                    .check(cose.entry(), Some(now))
                    .and_then(|request| gov.apply(request, seq));
                (cose, checked)
            }
            // A key release for a contract that adds noise spends from its dataset's budget,
            // and a run record moves its datasets' difference-check histories on, checked here
            // one entry after another: two releases at once cannot both take the budget's last
            // ε, nor two runs both be checked against the same earlier results.
            Entry::Audit(event) => {
                let charged = gov.account(event.entry(), true).map(|()| Applied {
                    proposal: None,
                    state: None,
                });
                (event, charged)
            }
        };
        match checked {
            Ok(applied) => {
                entries.push(bytes);
                waiting.push((job.reply, Outcome::Appended { seq, applied }));
            }
            Err(e) => match gov
                .refusal(bytes.entry(), &e, now)
                .and_then(|r| serde_json::to_vec(&r).ok())
            {
                Some(event) => {
                    entries.push(Prepared::new(event));
                    waiting.push((job.reply, Outcome::Refused(e)));
                }
                None => {
                    let _ = job.reply.send(Outcome::Refused(e));
                }
            },
        }
    }
    if entries.is_empty() {
        return;
    }
    match ledger.append_prepared(&entries, now) {
        Ok(_) => {
            drop(ledger);
            drop(gov);
            for (reply, outcome) in waiting {
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            let message = match crate::replay(&ledger) {
                Ok(state) => {
                    *gov = state;
                    e.to_string()
                }
                Err(replay) => format!("{e}; and the state could not be rebuilt: {replay}"),
            };
            // A refusal whose record was not written left its nonce unspent (the state was
            // rebuilt from the ledger): that is a failure too, so the request may be sent again
            // and be refused on the record.
            for (reply, _) in waiting {
                let _ = reply.send(Outcome::Failed(message.clone()));
            }
        }
    }
}
