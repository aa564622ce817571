//! Cooperative scheduling: an executor that needs the thread back at a given time says so here,
//! and a task that works through a batch (the driver) yields at that time, then goes on. sio's
//! `block_on` does: async-io's helper thread takes the reactor over when the thread runs tasks
//! past the helper's sleep, and a batch of a hundred messages outlasts its shortest sleep. Under
//! any other executor, a batch runs whole.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    /// When the thread's executor wants it back, while it runs a slice of tasks.
    static SLICE_END: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f`, a slice of tasks, with the tasks asked to yield from `end` on.
#[cfg(feature = "async-io")]
pub(crate) fn with_slice_end<T>(end: Instant, f: impl FnOnce() -> T) -> T {
    /// Puts back the enclosing slice's end, even when `f` panics.
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SLICE_END.with(|slice| slice.set(self.0));
        }
    }
    let _restore = Restore(SLICE_END.with(|slice| slice.replace(Some(end))));
    f()
}

/// Whether the running task should yield now: its executor's slice has ended.
pub(crate) fn slice_spent() -> bool {
    SLICE_END.with(|slice| slice.get().is_some_and(|end| Instant::now() >= end))
}

#[cfg(all(test, feature = "async-io"))]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_slice_is_spent_at_its_end_and_only_inside_it() {
        assert!(!slice_spent(), "no executor asked");
        let now = Instant::now();
        with_slice_end(now, || assert!(slice_spent()));
        with_slice_end(now + Duration::from_secs(3600), || {
            assert!(!slice_spent());
            // A slice inside a slice: the inner end counts, then the outer one again.
            with_slice_end(now, || assert!(slice_spent()));
            assert!(!slice_spent());
        });
        assert!(!slice_spent());
    }
}
