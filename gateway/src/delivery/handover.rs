//! The hand-over from the payments commit loop to the relay: announcements just committed,
//! passed in memory (so a delivery costs no outbox read), and requests to read the outbox
//! (something changed that only a read will find). Either wakes the relay at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gema_store::AnnouncementDelivery;
use tokio::sync::Notify;

use crate::lock;

/// What producers of announcements hold to wake the relay; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Handover {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    notify: Notify,
    handed: Mutex<Vec<AnnouncementDelivery>>,
    read_outbox: AtomicBool,
}

impl Handover {
    pub fn new() -> Self {
        Self::default()
    }

    /// Announcements just committed for bound devices, exactly as the outbox holds them.
    pub fn hand_over(&self, deliveries: impl IntoIterator<Item = AnnouncementDelivery>) {
        lock(&self.inner.handed).extend(deliveries);
        self.inner.notify.notify_one();
    }

    /// Something changed in the outbox that only a read will find (a re-queued
    /// announcement, a restart, a retry time that moved).
    pub fn read_outbox(&self) {
        self.inner.read_outbox.store(true, Ordering::SeqCst);
        self.inner.notify.notify_one();
    }

    /// Resolves when something was handed over or a read was asked for since the last
    /// [`Handover::take`] (a wake that came while nobody waited is kept).
    pub(crate) async fn woken(&self) {
        self.inner.notify.notified().await;
    }

    /// What was handed over, and whether a read of the outbox was asked for.
    pub(crate) fn take(&self) -> (Vec<AnnouncementDelivery>, bool) {
        let handed = std::mem::take(&mut *lock(&self.inner.handed));
        (handed, self.inner.read_outbox.swap(false, Ordering::SeqCst))
    }
}
