//! The driver's command queue: every task of the glue sends into it, the driver alone receives.
//!
//! Every frame a connection reads crosses it, so it is built for that one shape: a bounded
//! `VecDeque` behind one lock, the driver's waker, and the wakers of the senders waiting for room.
//! A send takes the lock, pushes and, only when the driver sleeps, wakes it. A general channel
//! notifies listener lists on both ends of every item: about 500 instructions per frame, against
//! about 200 here (callgrind, `bench/instructions.sh`).
//!
//! Senders that find the queue full wait, and one is woken for each item the driver takes, in the
//! order they came (a sender arriving just as room frees may still take it first, as with a
//! general channel). The queue closes when the last sender or the receiver is dropped; the receiver
//! still takes what was queued before the last sender left.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use rustc_hash::FxHashMap;

/// A queue of at most `capacity` items (at least one), and its two ends.
pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            closed: false,
            senders: 1,
            receiver: None,
            waiting: Waiting::default(),
        }),
    });
    (
        Sender {
            queue: queue.clone(),
        },
        Receiver { queue },
    )
}

/// Why [`Sender::try_send`] gave the item back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError<T> {
    /// The queue holds `capacity` items.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

/// The queue is closed: the item could not be sent, or nothing more will come.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed;

struct Queue<T> {
    state: Mutex<State<T>>,
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        crate::lock(&self.state)
    }
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    closed: bool,
    /// Live `Sender`s; the queue closes when the last one goes.
    senders: usize,
    /// The driver's waker while it waits for an item.
    receiver: Option<Waker>,
    waiting: Waiting,
}

impl<T> State<T> {
    /// Queues `item` when the queue is open and has room; the driver's waker, to wake once the
    /// lock is released.
    fn push(&mut self, item: T) -> Result<Option<Waker>, TrySendError<T>> {
        if self.closed {
            return Err(TrySendError::Closed(item));
        }
        if self.items.len() >= self.capacity {
            return Err(TrySendError::Full(item));
        }
        self.items.push_back(item);
        Ok(self.receiver.take())
    }

    /// Takes the next item, with the waker of the sender its room goes to.
    fn pop(&mut self) -> Option<(T, Option<Waker>)> {
        let item = self.items.pop_front()?;
        Some((item, self.waiting.next()))
    }
}

/// Senders waiting for room, by ticket, in arrival order. A ticket leaves `wakers` when its
/// sender is woken or gives up; `order` may still name it, and is skipped past then.
#[derive(Default)]
struct Waiting {
    wakers: FxHashMap<u64, Waker>,
    order: VecDeque<u64>,
    next_ticket: u64,
}

impl Waiting {
    /// Parks `ticket` (a new one when `None`) with `waker`, or updates its waker; returns the
    /// waker it replaced.
    fn park(&mut self, ticket: &mut Option<u64>, waker: &Waker) -> Option<Waker> {
        match ticket {
            Some(t) => match self.wakers.get_mut(t) {
                Some(w) if w.will_wake(waker) => None,
                Some(w) => Some(std::mem::replace(w, waker.clone())),
                None => {
                    // Woken, but another sender took the room first: first in line again.
                    self.wakers.insert(*t, waker.clone());
                    self.order.push_front(*t);
                    None
                }
            },
            None => {
                let t = self.next_ticket;
                self.next_ticket += 1;
                self.wakers.insert(t, waker.clone());
                self.order.push_back(t);
                *ticket = Some(t);
                None
            }
        }
    }

    /// Forgets `ticket`; its waker if it was still parked (not woken yet).
    fn leave(&mut self, ticket: u64) -> Option<Waker> {
        let parked = self.wakers.remove(&ticket);
        if self.wakers.is_empty() {
            self.order.clear();
        } else if self.order.len() > 2 * self.wakers.len() + 16 {
            // Senders that gave up while others wait behind a live one leave their tickets in
            // line: drop them before they pile up.
            let wakers = &self.wakers;
            self.order.retain(|t| wakers.contains_key(t));
        }
        parked
    }

    /// The waker of the sender first in line, taken out of the line.
    fn next(&mut self) -> Option<Waker> {
        while let Some(t) = self.order.pop_front() {
            if let Some(waker) = self.wakers.remove(&t) {
                return Some(waker);
            }
        }
        None
    }

    /// Every waiting sender's waker (the queue closed).
    fn all(&mut self) -> Vec<Waker> {
        self.order.clear();
        self.wakers.drain().map(|(_, waker)| waker).collect()
    }
}

/// The sending end; cloned for every task that sends.
pub(crate) struct Sender<T> {
    queue: Arc<Queue<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.queue.lock().senders += 1;
        Sender {
            queue: self.queue.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let receiver = {
            let mut state = self.queue.lock();
            state.senders -= 1;
            if state.senders > 0 {
                return;
            }
            state.closed = true;
            state.receiver.take()
        };
        if let Some(waker) = receiver {
            waker.wake();
        }
    }
}

impl<T> Sender<T> {
    /// Queues `item` if there is room, without waiting.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let receiver = self.queue.lock().push(item)?;
        if let Some(waker) = receiver {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `item`, waiting for room; fails (dropping it) if the queue closes first.
    pub fn send(&self, item: T) -> Send<'_, T> {
        Send {
            queue: &self.queue,
            item: Some(item),
            ticket: None,
        }
    }
}

/// The future of [`Sender::send`].
pub(crate) struct Send<'a, T> {
    queue: &'a Queue<T>,
    item: Option<T>,
    /// Its place in line once it found the queue full.
    ticket: Option<u64>,
}

// The item is moved out, never pinned.
impl<T> Unpin for Send<'_, T> {}

impl<T> Future for Send<'_, T> {
    type Output = Result<(), Closed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(item) = this.item.take() else {
            return Poll::Ready(Ok(()));
        };
        // Wakers are woken and dropped once the lock is released: the last reference to a task
        // frees the task, and with it maybe a sender of this queue.
        let (receiver, _left) = {
            let mut state = this.queue.lock();
            match state.push(item) {
                Ok(receiver) => {
                    let left = this.ticket.take().and_then(|t| state.waiting.leave(t));
                    (receiver, left)
                }
                Err(TrySendError::Full(item)) => {
                    let replaced = state.waiting.park(&mut this.ticket, cx.waker());
                    this.item = Some(item);
                    drop(state);
                    drop(replaced);
                    return Poll::Pending;
                }
                Err(TrySendError::Closed(item)) => {
                    drop(state);
                    drop(item);
                    return Poll::Ready(Err(Closed));
                }
            }
        };
        if let Some(waker) = receiver {
            waker.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T> Drop for Send<'_, T> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else {
            return;
        };
        let (next, _parked) = {
            let mut state = self.queue.lock();
            let parked = state.waiting.leave(ticket);
            // Woken for a room it will not take: the next in line gets it.
            let room = state.items.len() < state.capacity;
            let next = if parked.is_none() && room && !state.closed {
                state.waiting.next()
            } else {
                None
            };
            (next, parked)
        };
        if let Some(waker) = next {
            waker.wake();
        }
    }
}

/// The receiving end, the driver's.
pub(crate) struct Receiver<T> {
    queue: Arc<Queue<T>>,
}

impl<T> Receiver<T> {
    /// The next item, without waiting.
    pub fn try_recv(&self) -> Option<T> {
        let (item, next) = self.queue.lock().pop()?;
        if let Some(waker) = next {
            waker.wake();
        }
        Some(item)
    }

    /// The next item, waiting for one; `Err` once the queue is closed and empty.
    pub fn recv(&self) -> Recv<'_, T> {
        Recv { receiver: self }
    }

    /// Whether no item is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.lock().items.is_empty()
    }

    /// Whether every sender is gone.
    pub fn is_closed(&self) -> bool {
        self.queue.lock().closed
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (items, waiting, receiver) = {
            let mut state = self.queue.lock();
            state.closed = true;
            let items = std::mem::take(&mut state.items);
            (items, state.waiting.all(), state.receiver.take())
        };
        // Outside the lock: an item may hold a sender of this queue, whose drop takes it.
        drop(items);
        drop(receiver);
        for waker in waiting {
            waker.wake();
        }
    }
}

/// The future of [`Receiver::recv`].
pub(crate) struct Recv<'a, T> {
    receiver: &'a Receiver<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Result<T, Closed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (item, next) = {
            let mut state = self.receiver.queue.lock();
            match state.pop() {
                Some(popped) => popped,
                None if state.closed => return Poll::Ready(Err(Closed)),
                None => {
                    let replaced = match &mut state.receiver {
                        Some(waker) if waker.will_wake(cx.waker()) => None,
                        slot => slot.replace(cx.waker().clone()),
                    };
                    drop(state);
                    drop(replaced);
                    return Poll::Pending;
                }
            }
        };
        if let Some(waker) = next {
            waker.wake();
        }
        Poll::Ready(Ok(item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_waker::CountingWaker;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn poll<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn items_come_out_in_order_and_a_full_queue_refuses() {
        let (tx, rx) = bounded(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert!(!rx.is_empty());
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(tx.try_send(3), Ok(()));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.try_recv(), None);
        assert!(rx.is_empty());
    }

    #[test]
    fn a_waiting_receiver_is_woken_once_per_sleep() {
        let (tx, rx) = bounded(8);
        let (count, waker) = CountingWaker::new();
        let mut recv = rx.recv();
        assert_eq!(poll(&mut recv, &waker), Poll::Pending);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        // The second send finds the driver already woken.
        assert_eq!(count.count(), 1);
        assert_eq!(poll(&mut recv, &waker), Poll::Ready(Ok(1)));
        assert_eq!(rx.try_recv(), Some(2));
    }

    /// A sender parked on a full queue, with the count of its wake-ups.
    struct Parked<'a> {
        send: Send<'a, i32>,
        woken: Arc<CountingWaker>,
        waker: Waker,
    }

    impl Parked<'_> {
        fn poll(&mut self) -> Poll<Result<(), Closed>> {
            poll(&mut self.send, &self.waker)
        }
    }

    /// A queue of one holding 0, then two senders of 1 and 2 parked on it in that order.
    fn two_parked(tx: &Sender<i32>) -> (Parked<'_>, Parked<'_>) {
        tx.try_send(0).unwrap();
        let park = |item| {
            let (woken, waker) = CountingWaker::new();
            let mut parked = Parked {
                send: tx.send(item),
                woken,
                waker,
            };
            assert_eq!(parked.poll(), Poll::Pending);
            parked
        };
        (park(1), park(2))
    }

    #[test]
    fn senders_wait_for_room_and_are_woken_in_arrival_order() {
        let (tx, rx) = bounded(1);
        let (mut first, mut second) = two_parked(&tx);
        assert_eq!(rx.try_recv(), Some(0));
        assert_eq!((first.woken.count(), second.woken.count()), (1, 0));
        assert_eq!(first.poll(), Poll::Ready(Ok(())));
        assert_eq!(second.poll(), Poll::Pending);
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(second.woken.count(), 1);
        assert_eq!(second.poll(), Poll::Ready(Ok(())));
        assert_eq!(rx.try_recv(), Some(2));
    }

    #[test]
    fn a_woken_sender_that_gives_up_passes_the_room_on() {
        let (tx, rx) = bounded(1);
        let (first, mut second) = two_parked(&tx);
        assert_eq!(rx.try_recv(), Some(0));
        assert_eq!(first.woken.count(), 1);
        drop(first);
        assert_eq!(second.woken.count(), 1);
        assert_eq!(second.poll(), Poll::Ready(Ok(())));
        assert_eq!(rx.try_recv(), Some(2));
    }

    #[test]
    fn a_woken_sender_whose_room_was_taken_stays_first_in_line() {
        let (tx, rx) = bounded(1);
        let (mut first, second) = two_parked(&tx);
        assert_eq!(rx.try_recv(), Some(0));
        tx.try_send(9).unwrap();
        assert_eq!(first.poll(), Poll::Pending);
        assert_eq!(rx.try_recv(), Some(9));
        assert_eq!((first.woken.count(), second.woken.count()), (2, 0));
        assert_eq!(first.poll(), Poll::Ready(Ok(())));
    }

    #[test]
    fn senders_that_give_up_behind_a_waiting_one_leave_no_tickets_behind() {
        let (tx, _rx) = bounded(1);
        let (mut first, _second) = two_parked(&tx);
        for item in 3..200 {
            let mut gives_up = tx.send(item);
            assert_eq!(poll(&mut gives_up, &Waker::noop().clone()), Poll::Pending);
        }
        let waiting = |tx: &Sender<i32>| {
            let state = tx.queue.lock();
            (state.waiting.wakers.len(), state.waiting.order.len())
        };
        let (wakers, order) = waiting(&tx);
        assert_eq!(wakers, 2);
        assert!(order <= 2 * wakers + 17, "{order} tickets in line");
        assert_eq!(first.poll(), Poll::Pending);
    }

    #[test]
    fn a_dropped_receiver_lets_go_of_its_waker_while_senders_live() {
        let (tx, rx) = bounded::<i32>(1);
        let (count, waker) = CountingWaker::new();
        assert_eq!(poll(&mut rx.recv(), &waker), Poll::Pending);
        // This test's two handles and the queue's.
        assert_eq!(Arc::strong_count(&count), 3);
        drop(rx);
        assert_eq!(Arc::strong_count(&count), 2);
        assert_eq!(tx.try_send(1), Err(TrySendError::Closed(1)));
    }

    #[test]
    fn the_last_sender_closes_after_what_it_queued() {
        let (tx, rx) = bounded(4);
        let other = tx.clone();
        drop(tx);
        other.try_send(1).unwrap();
        let (count, waker) = CountingWaker::new();
        let mut recv = rx.recv();
        assert_eq!(poll(&mut recv, &waker), Poll::Ready(Ok(1)));
        assert_eq!(poll(&mut recv, &waker), Poll::Pending);
        assert!(!rx.is_closed());
        drop(other);
        assert_eq!(count.count(), 1);
        assert!(rx.is_closed());
        assert_eq!(poll(&mut recv, &waker), Poll::Ready(Err(Closed)));
    }

    #[test]
    fn a_dropped_receiver_frees_the_items_and_fails_the_senders() {
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = bounded(1);
        assert!(tx.try_send(Counted(dropped.clone())).is_ok());
        let (count, waker) = CountingWaker::new();
        let mut waiting = tx.send(Counted(dropped.clone()));
        assert!(poll(&mut waiting, &waker).is_pending());
        drop(rx);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert_eq!(count.count(), 1);
        assert!(matches!(
            poll(&mut waiting, &waker),
            Poll::Ready(Err(Closed))
        ));
        drop(waiting);
        assert_eq!(dropped.load(Ordering::SeqCst), 2);
        assert!(matches!(
            tx.try_send(Counted(dropped.clone())),
            Err(TrySendError::Closed(_))
        ));
    }
}
