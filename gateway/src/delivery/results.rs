//! Delivery results on their way to the database. The relay never writes them itself: it
//! sends each to the one writer that holds the queue (the payments commit loop, which puts
//! them in the next payment batch's transaction) and waits until it is written, so a
//! worker's next step sees its own result.
//!
//! The channel is made once, by whoever builds the gateway ([`results_channel`]): the
//! sender goes to the relay, the queue to the writer. There is no "first caller takes it".

use gema_store::DeliveryResult;
use tokio::sync::{mpsc, oneshot};

/// How many results may wait for the writer before the relay's workers wait too.
const DEPTH: usize = 4096;

/// One delivery result waiting for the writer.
#[derive(Debug)]
pub struct DeliveryRecord {
    /// The announcement's id (the downlink's message id).
    pub(crate) id: String,
    pub(crate) result: DeliveryResult,
    /// Told once the result is written (`true`: committed) or its write failed (`false`).
    pub(crate) done: oneshot::Sender<bool>,
}

/// The relay's end: sends results and waits for them to be written.
#[derive(Debug, Clone)]
pub struct ResultsSender(mpsc::Sender<DeliveryRecord>);

/// The writer's end.
pub type ResultsQueue = mpsc::Receiver<DeliveryRecord>;

/// A new results channel: the sender for the relay, the queue for its one writer.
pub fn results_channel() -> (ResultsSender, ResultsQueue) {
    let (tx, rx) = mpsc::channel(DEPTH);
    (ResultsSender(tx), rx)
}

impl ResultsSender {
    /// Queues `result` for announcement `id` and waits until it is written; whether it was
    /// committed. `false` at once if the writer is gone (the result is lost; the
    /// announcement stays pending and is sent again, and the device deduplicates).
    pub(crate) async fn record(&self, id: &str, result: DeliveryResult) -> bool {
        let (done, written) = oneshot::channel();
        let record = DeliveryRecord {
            id: id.to_string(),
            result,
            done,
        };
        if self.0.send(record).await.is_err() {
            return false;
        }
        written.await.unwrap_or(false)
    }
}
