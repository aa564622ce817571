//! The reactor's helper thread, asked to run at the lowest priority before async-io has started
//! it: it starts at that priority. A file of its own, so that nothing in this process has started
//! async-io before.
#![cfg(target_os = "linux")]

mod common;

use common::{nice_of_helper_threads, own_nice, wait_for_the_helper};

#[test]
fn a_reactor_helper_not_yet_started_starts_at_the_lowest_priority() {
    assert!(nice_of_helper_threads().is_empty());
    assert!(sio_smol::lower_reactor_helper_priority().unwrap());
    wait_for_the_helper();
    let lowest = i64::from(sio_smol::REACTOR_HELPER_NICE);
    assert_eq!(nice_of_helper_threads(), vec![lowest]);
    assert_ne!(own_nice(), lowest);
}
