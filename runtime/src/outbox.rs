//! The frames the driver queued for one WebSocket, shared by the driver (which pushes) and the
//! connection's task (which takes everything queued at once and writes it as one batch).
//!
//! It replaces a bounded channel: a channel's slots are allocated up front (tens of KiB per idle
//! connection at a useful bound), and it wakes the task for every frame. Here the queue grows only
//! while frames wait, and the task is woken once per batch.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use sio_core::engine::Frame;

/// The queue is full: the client reads slower than the server writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// What the connection's task took from the outbox.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Frames to write, moved into the batch.
    Frames,
    /// Nothing more will come: close the connection.
    Closed,
}

#[derive(Default)]
struct Inner {
    frames: VecDeque<Frame>,
    closed: bool,
    waker: Option<Waker>,
}

/// One WebSocket's outgoing frames.
pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    limit: usize,
}

impl Outbox {
    /// An empty outbox holding at most `limit` frames.
    pub fn new(limit: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            inner: Mutex::new(Inner::default()),
            limit: limit.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::lock(&self.inner)
    }

    /// Queues `frame`, waking the task if it waits. Frames pushed after `close` are dropped.
    pub fn push(&self, frame: Frame) -> Result<(), Full> {
        let waker = {
            let mut inner = self.lock();
            if inner.closed {
                return Ok(());
            }
            if inner.frames.len() >= self.limit {
                return Err(Full);
            }
            inner.frames.push_back(frame);
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// No more frames: the task writes what is queued, then closes the connection.
    pub fn close(&self) {
        let waker = {
            let mut inner = self.lock();
            inner.closed = true;
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Moves every queued frame into `batch` (which must be empty), or reports the close once
    /// the queue is empty; otherwise waits.
    pub fn poll_take(&self, cx: &mut Context<'_>, batch: &mut VecDeque<Frame>) -> Poll<Taken> {
        let mut inner = self.lock();
        if !inner.frames.is_empty() {
            std::mem::swap(&mut inner.frames, batch);
            return Poll::Ready(Taken::Frames);
        }
        if inner.closed {
            return Poll::Ready(Taken::Closed);
        }
        crate::register_waker(&mut inner.waker, cx);
        Poll::Pending
    }
}

/// The driver's end of an outbox: dropping it closes the outbox, so that the connection's task
/// never waits for a driver that is gone.
pub(crate) struct OutboxHandle(pub Arc<Outbox>);

impl Drop for OutboxHandle {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_waker::CountingWaker;
    use bytestring::ByteString;

    fn text(s: &'static str) -> Frame {
        Frame::Text(ByteString::from_static(s))
    }

    #[test]
    fn one_wake_per_batch_frames_in_order_then_close() {
        let outbox = Outbox::new(3);
        let (counter, waker) = CountingWaker::new();
        let mut cx = Context::from_waker(&waker);
        let mut batch = VecDeque::new();
        assert_eq!(outbox.poll_take(&mut cx, &mut batch), Poll::Pending);
        outbox.push(text("a")).unwrap();
        outbox.push(text("b")).unwrap();
        outbox.push(text("c")).unwrap();
        assert_eq!(outbox.push(text("d")), Err(Full));
        assert_eq!(counter.count(), 1);
        assert_eq!(
            outbox.poll_take(&mut cx, &mut batch),
            Poll::Ready(Taken::Frames)
        );
        assert_eq!(batch, [text("a"), text("b"), text("c")]);
        batch.clear();
        outbox.push(text("e")).unwrap();
        drop(OutboxHandle(outbox.clone()));
        outbox.push(text("dropped after close")).unwrap();
        // Queued frames are written before the close.
        assert_eq!(
            outbox.poll_take(&mut cx, &mut batch),
            Poll::Ready(Taken::Frames)
        );
        assert_eq!(batch, [text("e")]);
        batch.clear();
        assert_eq!(
            outbox.poll_take(&mut cx, &mut batch),
            Poll::Ready(Taken::Closed)
        );
    }
}
