//! A server on one thread of the async-io reactor: [`block_on`] runs an executor on the calling
//! thread and lets async-io poll the reactor often enough that its helper thread stays asleep.
//!
//! async-io's helper thread (`async-io`) takes the reactor over whenever nobody polled it during
//! its last sleep, and its sleeps start at 50 µs after each time it does. async-executor's `run`
//! lets the reactor be polled only every 200 tasks, so on a busy server the helper keeps winning:
//! it wakes on every event and hands the event to the executor's thread through a futex, which on
//! a server with one core preempts that thread (async-io issue #40). Handing control back to
//! async-io's `block_on` every [`REACTOR_POLL_INTERVAL`] keeps the reactor polled within the
//! helper's shortest sleep, so after a few sleeps it backs off to 10 ms and stays out of the way.
//! It still takes over when one task runs long, which is when the events it delivers are needed.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, Instant};

use async_executor::Executor;
use futures_lite::FutureExt;

/// How long [`block_on`] runs tasks before it lets async-io poll the reactor: below the 50 µs of
/// async-io helper thread's shortest sleep.
pub const REACTOR_POLL_INTERVAL: Duration = Duration::from_micros(40);

thread_local! {
    /// The executor of the [`block_on`] running on this thread, if any.
    static CURRENT: RefCell<Option<Arc<Executor<'static>>>> = const { RefCell::new(None) };
}

/// The executor of the [`block_on`] running on this thread, if any: the smol and async-std
/// runtimes spawn on it when they are made inside one.
pub fn current_executor() -> Option<Arc<Executor<'static>>> {
    CURRENT.with(|current| current.borrow().clone())
}

/// Runs `future` to completion on this thread, together with the tasks spawned on this thread's
/// executor while it runs: every sio task of a `SocketIo` made inside it. The thread also drives
/// the reactor, as tokio's current-thread runtime does. Tasks still pending when `future` completes
/// are dropped with the executor.
///
/// Between two polls of the reactor it runs tasks for at most [`REACTOR_POLL_INTERVAL`], so that
/// async-io's helper thread does not preempt it (see the module's docs and `bench/README.md`).
///
/// ```
/// let answer = sio_runtime::block_on(async {
///     let task = sio_runtime::current_executor().expect("inside block_on").spawn(async { 6 * 7 });
///     task.await
/// });
/// assert_eq!(answer, 42);
/// ```
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    let executor = Arc::new(Executor::new());
    let previous = CURRENT.with(|current| current.replace(Some(executor.clone())));
    // Restores the enclosing `block_on`'s executor, even when `future` panics.
    struct Restore(Option<Arc<Executor<'static>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|current| *current.borrow_mut() = previous);
        }
    }
    let _restore = Restore(previous);
    run(&executor, future)
}

/// Runs `executor`'s tasks on this thread until `future` completes.
fn run<T>(executor: &Executor<'_>, future: impl Future<Output = T>) -> T {
    let main = Arc::new(MainWake {
        woken: AtomicBool::new(true),
        outer: Mutex::new(None),
    });
    let main_waker = Waker::from(main.clone());
    let mut future = pin!(future);
    async_io::block_on(async {
        loop {
            // `future` is polled only when it was woken: an accept loop would otherwise try a
            // system call each time.
            let done = poll_fn(|cx| {
                main.register(cx.waker());
                if main.woken.swap(false, Ordering::AcqRel) {
                    let mut main_cx = std::task::Context::from_waker(&main_waker);
                    if let Poll::Ready(value) = future.as_mut().poll(&mut main_cx) {
                        return Poll::Ready(Some(value));
                    }
                }
                Poll::Ready(None)
            })
            .await;
            if let Some(value) = done {
                return value;
            }
            let started = Instant::now();
            let mut out_of_time = false;
            while executor.try_tick() {
                if started.elapsed() >= REACTOR_POLL_INTERVAL {
                    out_of_time = true;
                    break;
                }
            }
            if out_of_time {
                // async-io's `block_on` polls the reactor, without waiting, before it polls us.
                futures_lite::future::yield_now().await;
            } else {
                // Nothing left to run: wait for a task (and run it) or for `future` to be woken,
                // while async-io's `block_on` waits on the reactor. A poll of the reactor without
                // waiting first, as after a full slice, would cost a second turn of it (five system
                // calls) for the same events.
                executor.tick().or(main.wait()).await;
            }
        }
    })
}

/// The waker of [`block_on`]'s own future: records that it was woken, and wakes `block_on`.
struct MainWake {
    /// Set when the future must be polled (and at the start).
    woken: AtomicBool,
    /// The waker of async-io's `block_on`.
    outer: Mutex<Option<Waker>>,
}

impl MainWake {
    fn register(&self, waker: &Waker) {
        let mut outer = self.outer.lock().unwrap_or_else(|e| e.into_inner());
        if !outer.as_ref().is_some_and(|o| o.will_wake(waker)) {
            *outer = Some(waker.clone());
        }
    }

    /// Ready once the future has been woken (the flag stays set for the next poll).
    async fn wait(&self) {
        poll_fn(|cx| {
            self.register(cx.waker());
            if self.woken.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

impl Wake for MainWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let outer = self.outer.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(outer) = outer {
            outer.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::thread;

    use super::*;

    #[test]
    fn runs_the_tasks_spawned_inside_on_the_calling_thread() {
        let caller = thread::current().id();
        let (ran_on, value) = block_on(async {
            let executor = current_executor().expect("inside block_on");
            let task = executor.spawn(async { (thread::current().id(), 6 * 7) });
            task.await
        });
        assert_eq!((ran_on, value), (caller, 42));
        assert!(
            current_executor().is_none(),
            "the executor is gone with block_on"
        );
    }

    #[test]
    fn nested_block_on_restores_the_outer_executor_even_after_a_panic() {
        block_on(async {
            let outer = current_executor().expect("outer");
            let inner = block_on(async { current_executor().expect("inner") });
            assert!(!Arc::ptr_eq(&outer, &inner));
            assert!(Arc::ptr_eq(
                &outer,
                &current_executor().expect("outer again")
            ));
            let panicked = std::panic::catch_unwind(|| block_on(async { panic!("in the future") }));
            assert!(panicked.is_err());
            assert!(Arc::ptr_eq(
                &outer,
                &current_executor().expect("outer after the panic")
            ));
        });
    }

    #[test]
    fn the_future_is_polled_only_when_woken_while_tasks_run() {
        let polls = AtomicUsize::new(0);
        let (done_tx, done_rx) = async_channel::bounded::<()>(1);
        let total = block_on(async {
            let executor = current_executor().expect("inside block_on");
            // 2,000 tasks that each yield 10 times keep the executor busy through many rounds.
            let finished = Arc::new(AtomicUsize::new(0));
            for _ in 0..2_000 {
                let finished = finished.clone();
                let done_tx = done_tx.clone();
                executor
                    .spawn(async move {
                        for _ in 0..10 {
                            futures_lite::future::yield_now().await;
                        }
                        if finished.fetch_add(1, Ordering::AcqRel) + 1 == 2_000 {
                            let _ = done_tx.try_send(());
                        }
                    })
                    .detach();
            }
            let mut done = pin!(done_rx.recv());
            poll_fn(|cx| {
                polls.fetch_add(1, Ordering::Relaxed);
                done.as_mut().poll(cx)
            })
            .await
            .expect("the last task sends");
            finished.load(Ordering::Acquire)
        });
        assert_eq!(total, 2_000);
        // Once before any task ran, once when the last task woke it.
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }
}
