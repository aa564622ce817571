//! The driver's answers to one HTTP request, one at a time (a body request, then the response).
//!
//! It replaces a bounded channel of one: that took several allocations per request (the channel
//! and its listeners) and its teardown ran on the driver. Here one allocation holds the slot.

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crate::driver::Outcome;

#[derive(Default)]
struct Inner {
    outcome: Option<Outcome>,
    /// The driver dropped its end: no outcome will come.
    sender_gone: bool,
    waker: Option<Waker>,
}

/// A new slot: the driver's end and the request's end.
pub(crate) fn reply_slot() -> (ReplySender, ReplyReceiver) {
    let inner = Arc::new(Mutex::new(Inner::default()));
    (ReplySender(inner.clone()), ReplyReceiver(inner))
}

/// The driver's end. Dropping it tells the request that no outcome will come.
pub(crate) struct ReplySender(Arc<Mutex<Inner>>);

impl ReplySender {
    /// Hands `outcome` to the request. The core answers a request once per step, so the slot is
    /// empty; should it not be, the new outcome is dropped, as a full channel would.
    pub fn send(&self, outcome: Outcome) {
        let waker = {
            let mut inner = crate::lock(&self.0);
            if inner.outcome.is_some() {
                return;
            }
            inner.outcome = Some(outcome);
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for ReplySender {
    fn drop(&mut self) {
        let waker = {
            let mut inner = crate::lock(&self.0);
            inner.sender_gone = true;
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The request's end.
pub(crate) struct ReplyReceiver(Arc<Mutex<Inner>>);

impl ReplyReceiver {
    /// The next outcome; `None` once the driver dropped its end with nothing left in the slot.
    pub async fn recv(&self) -> Option<Outcome> {
        poll_fn(|cx| {
            let mut inner = crate::lock(&self.0);
            if let Some(outcome) = inner.outcome.take() {
                return Poll::Ready(Some(outcome));
            }
            if inner.sender_gone {
                return Poll::Ready(None);
            }
            crate::register_waker(&mut inner.waker, cx);
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_read_body(outcome: Option<Outcome>, expected: usize) -> bool {
        matches!(outcome, Some(Outcome::ReadBody(limit)) if limit == expected)
    }

    #[test]
    fn outcomes_arrive_in_turn_then_the_end() {
        let (sender, receiver) = reply_slot();
        futures_lite::future::block_on(async {
            sender.send(Outcome::ReadBody(10));
            // The slot holds one outcome: a second before the first is taken is dropped.
            sender.send(Outcome::ReadBody(20));
            assert!(is_read_body(receiver.recv().await, 10));
            sender.send(Outcome::Abort);
            assert!(matches!(receiver.recv().await, Some(Outcome::Abort)));
            sender.send(Outcome::ReadBody(30));
            drop(sender);
            // What was sent before the drop is still delivered.
            assert!(is_read_body(receiver.recv().await, 30));
            assert!(receiver.recv().await.is_none());
        });
    }

    #[test]
    fn a_waiting_request_is_woken_by_the_outcome_and_by_the_drop() {
        use crate::test_waker::CountingWaker;
        use std::future::Future;
        use std::task::Context;

        let (counter, waker) = CountingWaker::new();
        let mut cx = Context::from_waker(&waker);
        let (sender, receiver) = reply_slot();
        let mut first = std::pin::pin!(receiver.recv());
        assert!(first.as_mut().poll(&mut cx).is_pending());
        sender.send(Outcome::ReadBody(5));
        assert_eq!(counter.count(), 1);
        assert!(matches!(
            first.as_mut().poll(&mut cx),
            Poll::Ready(Some(Outcome::ReadBody(5)))
        ));
        let mut second = std::pin::pin!(receiver.recv());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        drop(sender);
        assert_eq!(counter.count(), 2);
        assert!(matches!(second.as_mut().poll(&mut cx), Poll::Ready(None)));
    }
}
