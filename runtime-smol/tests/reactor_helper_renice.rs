//! The reactor's helper thread, already running when asked to run at the lowest priority: it is
//! reniced. A file of its own, so that nothing else in this process touches the helper.
#![cfg(target_os = "linux")]

mod common;

use common::{nice_of_helper_threads, own_nice, wait_for_the_helper};

#[test]
fn a_running_reactor_helper_is_reniced_to_the_lowest_priority() {
    smol::block_on(async {});
    wait_for_the_helper();
    assert_eq!(nice_of_helper_threads(), vec![own_nice()]);
    assert!(sio_smol::lower_reactor_helper_priority().unwrap());
    let lowest = i64::from(sio_smol::REACTOR_HELPER_NICE);
    assert_eq!(nice_of_helper_threads(), vec![lowest]);
    assert_ne!(own_nice(), lowest);
}
