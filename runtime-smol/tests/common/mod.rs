//! Reading threads' nice values from `/proc`, for the tests of the reactor helper's priority.

use std::time::{Duration, Instant};

/// The nice value in a `/proc/.../stat` line: "tid (comm) state ppid ...", the 19th field.
fn nice_in_stat(stat: &str) -> (String, i64) {
    let (head, fields) = stat.rsplit_once(") ").unwrap();
    let name = head.split_once(" (").unwrap().1.to_owned();
    (name, fields.split(' ').nth(16).unwrap().parse().unwrap())
}

/// The nice values of this process's threads named `async-io`.
pub fn nice_of_helper_threads() -> Vec<i64> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        // A thread listed may be gone by the time its stat is read (ESRCH): it is not the helper,
        // which lives as long as the process.
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue;
        };
        let (name, value) = nice_in_stat(&stat);
        if name == "async-io" {
            nice.push(value);
        }
    }
    nice
}

/// Waits until the helper thread has named itself, which a new thread does first thing.
pub fn wait_for_the_helper() {
    let deadline = Instant::now() + Duration::from_secs(10);
    while nice_of_helper_threads().is_empty() {
        assert!(Instant::now() < deadline, "no thread named async-io");
        std::thread::yield_now();
    }
}

/// The calling thread's nice value.
pub fn own_nice() -> i64 {
    nice_in_stat(&std::fs::read_to_string("/proc/thread-self/stat").unwrap()).1
}
