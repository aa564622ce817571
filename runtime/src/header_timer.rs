//! hyper's timer for one HTTP connection (hyper uses it for the header-read timeout only).
//!
//! hyper asks for a new sleep for every request head. Registering a runtime timer each time is
//! cheap on tokio but not on async-io (smol, async-std), where every registration wakes the
//! reactor thread. So the connection keeps one runtime timer and moves it only when it would fire
//! too late; when it fires early, the sleep re-arms it for its own deadline. On a keep-alive
//! connection the timer is then registered about once per timeout, not once per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::{Runtime, Timer};

/// The runtime timer a connection's sleeps share, and the deadline it is armed for.
#[derive(Default)]
struct Armed {
    timer: Option<Pin<Box<dyn Timer>>>,
    at: Option<Instant>,
}

/// hyper's [`hyper::rt::Timer`] for one connection. Its sleeps share one runtime timer: hyper holds
/// at most one header-read sleep at a time, and only the sleep polled last is woken.
#[derive(Clone)]
pub(crate) struct HeaderTimer {
    runtime: Arc<dyn Runtime>,
    armed: Arc<Mutex<Armed>>,
}

impl HeaderTimer {
    pub fn new(runtime: Arc<dyn Runtime>) -> HeaderTimer {
        HeaderTimer {
            runtime,
            armed: Arc::default(),
        }
    }
}

impl hyper::rt::Timer for HeaderTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(self.runtime.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeaderSleep {
            deadline,
            timer: self.clone(),
        })
    }

    fn now(&self) -> Instant {
        self.runtime.now()
    }
}

struct HeaderSleep {
    deadline: Instant,
    timer: HeaderTimer,
}

impl Future for HeaderSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let runtime = &self.timer.runtime;
        let mut armed = crate::lock(&self.timer.armed);
        // Twice at most: once more when the shared timer fired for an earlier deadline.
        for _ in 0..2 {
            if runtime.now() >= deadline {
                return Poll::Ready(());
            }
            let Armed { timer, at } = &mut *armed;
            // Armed too late (or for nothing): bring it forward. Armed earlier: it fires first,
            // and the sleep re-arms it then.
            if timer.is_none() || at.is_none_or(|at| at > deadline) {
                match timer {
                    Some(timer) => timer.as_mut().reset(deadline),
                    None => *timer = Some(runtime.new_timer(deadline)),
                }
                *at = Some(deadline);
            }
            let Some(timer) = timer.as_mut() else {
                return Poll::Pending;
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            *at = None;
        }
        // The timer says it fired, but the clock is not at the deadline yet: ask to be polled again.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl hyper::rt::Sleep for HeaderSleep {}
