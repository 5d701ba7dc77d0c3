//! [`Durable`]: a future that resolves when an appended event is durable.
//!
//! `append_durable` ([`crate::Log::append_durable`],
//! [`crate::pg::PgLog::append_durable`]) queues an event and asks the
//! writer for a group commit at once; the returned future completes when
//! the batch holding the event is in the WAL after `fdatasync` (a
//! directory) or committed (PostgreSQL). It is woken by the writer thread,
//! so an async caller never blocks a runtime thread. Requests that arrive
//! while a commit runs share the next one: under load one `fdatasync`
//! serves many waiters.
//!
//! Durable is not yet *signed*: the checkpoint covering the event follows
//! within the log's period, and recovery after a crash re-signs what the
//! WAL holds. What the future promises is that a crash can no longer lose
//! the event.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::appender::{Shared, Slot};
use crate::Error;

/// Resolves to the event's index once it is durable, or to the reason it
/// never will be ([`Error::Unavailable`], [`Error::Closed`]). Dropping it
/// does not withdraw the event.
#[derive(Debug)]
#[must_use = "an event is only known to be durable once this resolves"]
pub struct Durable {
    slot: Arc<Slot>,
    offset: u64,
    shared: Arc<Shared>,
}

impl Durable {
    pub(crate) fn new(slot: Arc<Slot>, offset: u64, shared: Arc<Shared>) -> Self {
        Self {
            slot,
            offset,
            shared,
        }
    }

    fn settled(&self) -> Option<Result<u64, Error>> {
        if let Some(i) = self.slot.index(self.offset) {
            return Some(Ok(i));
        }
        if let Some(why) = self.slot.lost() {
            return Some(Err(Error::Unavailable(why.to_owned())));
        }
        None
    }
}

impl Future for Durable {
    type Output = Result<u64, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.settled() {
            return Poll::Ready(r);
        }
        // Register first, then look again: the writer settles the slot
        // before it wakes, so no wake-up is lost in between.
        self.slot.register(cx.waker());
        if let Some(r) = self.settled() {
            return Poll::Ready(r);
        }
        match self.shared.gone() {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Pending,
        }
    }
}
