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
//! From then on the slices grow with the helper's sleeps, up to 250 µs: each poll of the reactor
//! costs async-io five system calls, and a busy server then polls it about as often as tokio's
//! does. The helper still takes over when one task runs long, which is when the events it
//! delivers are needed; the slices then start over at [`REACTOR_POLL_INTERVAL`]. The driver, whose
//! batches of messages would outlast the helper's shortest sleep, yields when a slice is spent
//! (`coop.rs`).

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, Instant};

use async_executor::Executor;
use futures_lite::FutureExt;

/// How long [`block_on`] runs tasks before it lets async-io poll the reactor, at the start and
/// whenever async-io's helper thread may have started its sleeps over: half of its shortest
/// sleep, 50 µs, which leaves room for the wake-up from the helper's own poll of the reactor and
/// for a task that ends late. Later slices are longer, up to 250 µs.
pub const REACTOR_POLL_INTERVAL: Duration = Duration::from_micros(25);

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
/// Between two polls of the reactor it runs tasks for at most [`REACTOR_POLL_INTERVAL`] at first,
/// up to 250 µs as async-io's helper thread backs off, so that the helper does not preempt it
/// (see the module's docs and `bench/README.md`).
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
    let mut helper = HelperWatch::new(&RESTARTS, Instant::now());
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
            let budget = helper.budget(started);
            // Tasks that work through batches yield when the budget is spent (`coop`).
            let (ended, out_of_time) = crate::coop::with_slice_end(started + budget, || {
                run_slice(started, budget, || executor.try_tick(), Instant::now)
            });
            helper.ran(ended);
            if out_of_time {
                // async-io's `block_on` polls the reactor, without waiting, before it polls us.
                futures_lite::future::yield_now().await;
            } else {
                // Nothing left to run: wait for a task (and run it) or for `future` to be woken,
                // while async-io's `block_on` waits on the reactor. A poll of the reactor without
                // waiting first, as after a full slice, would cost a second turn of it (five system
                // calls) for the same events.
                executor.tick().or(main.wait()).await;
                helper.waited(ended, Instant::now());
            }
        }
    })
}

/// Runs tasks (`try_tick` runs one, `false` when none was ready) from `started` until `budget` is
/// spent, and always at least one: where a poll of the reactor takes longer than the budget left
/// after it (slow system calls: a sandbox such as gVisor, a traced process), a slice that may run
/// none would poll the reactor forever and never run a task. Returns when the last task ended, and
/// whether the budget ran out (`false`: no task was left).
fn run_slice(
    started: Instant,
    budget: Duration,
    mut try_tick: impl FnMut() -> bool,
    mut now: impl FnMut() -> Instant,
) -> (Instant, bool) {
    let mut ended = started;
    while try_tick() {
        ended = now();
        if ended.saturating_duration_since(started) >= budget {
            return (ended, true);
        }
    }
    (ended, false)
}

/// What [`block_on`] knows of async-io's helper thread, to run tasks as long as it can between two
/// polls of the reactor ("ticks") without the helper taking the reactor over.
///
/// The helper sleeps 50 µs, then 75, 100, 250, 500, 750, 1000, 2500 and 5000 µs, then 10 ms at a
/// time. When a sleep saw no tick it tries the reactor's lock (from the tenth sleep on it waits
/// for it) and, if it gets it, polls the reactor itself until an event comes. Each time it has
/// done so, or is woken, it starts over at 50 µs (async-io 2.6, `driver.rs`). So right after it
/// starts over the reactor must tick within 50 µs, but once it has slept a while, far less often.
/// A wait on the reactor ticks when it starts and holds the lock until it ends, so the gap that
/// counts runs from the last tick, across a wait, to the next. That schedule is not public: this
/// is an estimate, and a wrong one costs speed, not events (the helper then hands the events over
/// through a futex, as it did before `block_on`). Of the helper's own polls, only those that find
/// events of connections are seen; one that ends on a timer, the listener or a wake-up is not,
/// and the slices start over at the next one that is, which on a busy server is soon.
struct HelperWatch<'a> {
    /// When the helper may have started over, as every thread saw it.
    restarts: &'a Restarts,
    /// When the helper may have started over unseen, as this thread guesses from a slice that
    /// ran long.
    guessed: Option<Instant>,
    /// When this thread last polled the reactor, or started waiting on it.
    last_tick: Instant,
}

/// The longest slice of tasks between two polls of the reactor: how late an event can be seen
/// while tasks keep the thread busy. (tokio's runtime looks every 61 tasks; at the few µs a task
/// of sio takes, that is a few hundred µs too.)
const LONGEST_SLICE: Duration = Duration::from_micros(250);

/// A wait on the reactor this long may have let the helper take it: async-io's `block_on` hands
/// the reactor to the helper after 500 µs of events that did not wake it, and a wait of 10 ms
/// lets the helper queue for it.
const LONG_WAIT: Duration = Duration::from_micros(400);

/// The longest gap between two ticks, the first one `since` the helper may have started over:
/// a quarter of `since`, at least [`REACTOR_POLL_INTERVAL`]. It stays shorter than any of the
/// helper's sleeps that starts after the first tick.
fn gap_after(since: Duration) -> Duration {
    (since / 4).clamp(REACTOR_POLL_INTERVAL, Duration::from_millis(2))
}

/// A gap longer than this, from a tick `since` the helper may have started over, may have held
/// a whole sleep of it: half of `since`, between 60 µs (its second sleep is 75 µs) and 9 ms (its
/// longest is 10 ms). Longer than [`gap_after`] by more than one task's poll takes, so that a
/// slice that ends a little late is not taken for one that may have let the helper in.
fn safe_gap_after(since: Duration) -> Duration {
    (since / 2).clamp(Duration::from_micros(60), Duration::from_millis(9))
}

impl<'a> HelperWatch<'a> {
    fn new(restarts: &'a Restarts, now: Instant) -> HelperWatch<'a> {
        // The helper may have held the reactor until now.
        restarts.note(now);
        HelperWatch {
            restarts,
            guessed: None,
            last_tick: now,
        }
    }

    /// The tick the helper counts from, and how long after it may have started over that tick
    /// was. A restart counts as a tick: the helper polled the reactor itself. `guesses`: whether
    /// this thread's guess counts besides the restarts seen.
    fn reference(&self, guesses: bool) -> (Instant, Duration) {
        let seen = self.restarts.latest();
        let guessed = self.guessed.filter(|_| guesses);
        let restart = seen.max(guessed).unwrap_or(self.last_tick);
        let tick = self.last_tick.max(restart);
        (tick, tick.saturating_duration_since(restart))
    }

    /// How long tasks may run from `now` before the reactor ticks again; zero: one task, then tick.
    fn budget(&self, now: Instant) -> Duration {
        let (tick, since) = self.reference(true);
        let gap = gap_after(since).saturating_sub(now.saturating_duration_since(tick));
        gap.min(LONGEST_SLICE)
    }

    /// Tasks ran until `ended`, and the reactor ticks now: if the gap since the last tick may
    /// have held a whole sleep of the helper, the helper may have taken the reactor. Judged from
    /// the restarts seen only: were the guess itself a restart, the next slice that ran a little
    /// long right after it would be another, and the slices would stay at their shortest while
    /// the helper sleeps its longest (`bench/README.md`, run 18). Had the helper really taken
    /// the reactor, the events of connections it hands out are soon seen.
    fn ran(&mut self, ended: Instant) {
        let (tick, since) = self.reference(false);
        if ended.saturating_duration_since(tick) > safe_gap_after(since) {
            self.guessed = Some(ended);
        }
        self.last_tick = ended;
    }

    /// The thread waited on the reactor from `started` until `ended`.
    fn waited(&mut self, started: Instant, ended: Instant) {
        if ended.saturating_duration_since(started) >= LONG_WAIT {
            self.restarts.note(ended);
        }
    }
}

/// The latest time async-io's helper thread may have started its sleeps over, as noted by any
/// thread.
struct Restarts {
    /// Nanoseconds from [`epoch`], plus one; 0 for never.
    at: AtomicU64,
}

impl Restarts {
    const fn new() -> Restarts {
        Restarts {
            at: AtomicU64::new(0),
        }
    }

    fn note(&self, at: Instant) {
        let nanos = at.saturating_duration_since(epoch()).as_nanos();
        let nanos = u64::try_from(nanos)
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        self.at.fetch_max(nanos, Ordering::Relaxed);
    }

    fn latest(&self) -> Option<Instant> {
        match self.at.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(epoch() + Duration::from_nanos(nanos - 1)),
        }
    }

    /// The reactor handed events of connections to them on this thread: if it is not a
    /// [`block_on`]'s, the helper (or another thread driving the reactor) polled it, and the
    /// helper starts its sleeps over.
    fn note_if_outside_block_on(&self) {
        // During the thread's teardown it cannot be told: counted as outside, which is safe.
        let inside = CURRENT
            .try_with(|current| current.try_borrow().is_ok_and(|current| current.is_some()))
            .unwrap_or(false);
        if !inside {
            self.note(Instant::now());
        }
    }
}

/// The restarts every [`block_on`] of the process reads.
static RESTARTS: Restarts = Restarts::new();

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Called when the reactor hands events of connections to them (`async_io/edge.rs`): that is how a
/// [`block_on`] learns that the helper polled the reactor.
pub(crate) fn reactor_turned() {
    RESTARTS.note_if_outside_block_on();
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

    /// The ends of async-io 2.6's helper thread's sleeps over its first 60 ms after it starts over,
    /// in µs: 50, 75, 100, 250, 500, 750, 1000, 2500 and 5000 µs, then 10 ms each (`driver.rs`).
    fn helper_wake_ups() -> Vec<u64> {
        let mut at = vec![0];
        for sleep in [50, 75, 100, 250, 500, 750, 1000, 2500, 5000]
            .into_iter()
            .chain(std::iter::repeat(10_000))
        {
            let next = at.last().copied().unwrap_or(0) + sleep;
            if next > 60_000 {
                return at;
            }
            at.push(next);
        }
        at
    }

    #[test]
    fn a_slice_runs_one_task_even_with_no_budget_left() {
        let start = Instant::now();
        let us = Duration::from_micros;
        // Ten tasks ready, each 10 µs long.
        let run = |budget: Duration| {
            let (mut ready, clock) = (10, std::cell::Cell::new(start));
            let (ended, out_of_time) = run_slice(
                start,
                budget,
                || {
                    if ready == 0 {
                        return false;
                    }
                    ready -= 1;
                    clock.set(clock.get() + us(10));
                    true
                },
                || clock.get(),
            );
            (10 - ready, ended - start, out_of_time)
        };
        // A zero budget (the reactor's poll took all of it) still runs one task.
        assert_eq!(run(Duration::ZERO), (1, us(10), true));
        assert_eq!(run(us(25)), (3, us(30), true));
        // With room for all of them, the slice ends when none is left.
        assert_eq!(run(us(1_000)), (10, us(100), false));
    }

    #[test]
    fn no_gap_between_ticks_can_hold_a_sleep_of_the_helper() {
        let wake_ups = helper_wake_ups();
        for since in 1..40_000u64 {
            // The helper takes the reactor after a sleep with no tick: the gap from a tick at
            // `since` to the next must end before any sleep that starts after it does.
            let room = wake_ups
                .windows(2)
                .filter(|sleep| sleep[0] >= since)
                .map(|sleep| sleep[1] - since)
                .min()
                .expect("sleeps go on");
            let since = Duration::from_micros(since);
            let (gap, safe) = (gap_after(since), safe_gap_after(since));
            assert!(
                safe < Duration::from_micros(room),
                "{since:?}: {safe:?} against {room} µs"
            );
            // Room for a task of 20 µs past the end of a slice.
            assert!(gap + Duration::from_micros(20) <= safe, "{since:?}");
        }
        assert_eq!(gap_after(Duration::ZERO), REACTOR_POLL_INTERVAL);
    }

    #[test]
    fn slices_grow_after_a_restart_and_count_the_wait_before_them() {
        let restarts = Restarts::new();
        // After the epoch that restarts count from, which the first note sets.
        let start = Instant::now() + Duration::from_secs(1);
        let us = Duration::from_micros;
        // Slices that each run 5 µs past their budget: no restart, and they grow to the longest
        // within a millisecond.
        let mut helper = HelperWatch::new(&restarts, start);
        let mut now = start;
        let mut budgets = Vec::new();
        while now < start + us(1_200) {
            let budget = helper.budget(now);
            budgets.push(budget);
            now += budget + us(5);
            helper.ran(now);
        }
        assert_eq!(restarts.latest(), Some(start));
        assert_eq!(budgets.first(), Some(&us(25)));
        assert_eq!(budgets.last(), Some(&LONGEST_SLICE));
        assert!(budgets.is_sorted(), "{budgets:?}");
        // Exactly: a quarter of the time since the restart at the last tick.
        let mut at = |tick: u64, now: u64| {
            helper.last_tick = start + us(tick);
            helper.budget(start + us(now))
        };
        assert_eq!(at(400, 400), us(100));
        assert_eq!(at(400, 450), us(50));
        assert_eq!(at(1_000, 1_000), us(250));
        // A wait of 300 µs from the tick at 1 ms leaves 250 - 300: tick before any task.
        assert_eq!(at(1_000, 1_300), Duration::ZERO);
        helper.waited(start + us(1_000), start + us(1_300));
        // The gap from the tick at 1 ms to 1.3 ms is not over half the time since the restart.
        helper.ran(start + us(1_300));
        assert_eq!(restarts.latest(), Some(start));
        // Long after the restart, the same wait leaves a whole slice.
        helper.last_tick = start + us(20_000);
        helper.waited(start + us(20_000), start + us(20_300));
        assert_eq!(helper.budget(start + us(20_300)), LONGEST_SLICE);
    }

    #[test]
    fn a_long_gap_a_long_wait_or_another_thread_s_poll_starts_the_slices_over() {
        let restarts = Restarts::new();
        let start = Instant::now() + Duration::from_secs(1);
        let us = Duration::from_micros;
        let mut helper = HelperWatch::new(&restarts, start);
        // A gap a little over the budget is no reason; one over half the time since is, for
        // this thread only.
        helper.last_tick = start + us(5_000);
        helper.ran(start + us(5_300));
        assert_eq!(helper.guessed, None);
        helper.ran(start + us(8_000));
        assert_eq!(helper.guessed, Some(start + us(8_000)));
        assert_eq!(restarts.latest(), Some(start));
        assert_eq!(helper.budget(start + us(8_000)), us(25));
        // The slices after a guess grow from it, and one that runs over its budget right after
        // it is judged from the restart seen, 8 ms before: no second guess.
        helper.ran(start + us(8_100));
        assert_eq!(helper.guessed, Some(start + us(8_000)));
        assert_eq!(helper.budget(start + us(8_100)), us(25));
        helper.last_tick = start + us(9_000);
        assert_eq!(helper.budget(start + us(9_000)), us(250));
        // So is a wait on the reactor of 400 µs or more, not a shorter one.
        helper.last_tick = start + us(40_000);
        helper.waited(start + us(40_000), start + us(40_399));
        assert_eq!(restarts.latest(), Some(start));
        helper.waited(start + us(40_000), start + us(40_400));
        assert_eq!(restarts.latest(), Some(start + us(40_400)));
        assert_eq!(helper.budget(start + us(40_400)), us(25));
        // The reactor polled by a thread outside `block_on` is a restart too, seen by every
        // `block_on`; inside one it is not.
        let other = Restarts::new();
        block_on(async { other.note_if_outside_block_on() });
        assert_eq!(other.latest(), None);
        let before = Instant::now();
        std::thread::scope(|scope| {
            scope.spawn(|| other.note_if_outside_block_on());
        });
        assert!(other.latest().is_some_and(|at| at >= before));
    }

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
