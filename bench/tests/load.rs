//! The load generator against the sio bench server (tokio), at small sizes: every scenario runs,
//! reads the server's `/proc` figures, and loses nothing.

use std::process::Command;
use std::time::Duration;

use sio_bench::ServerProcess;
use sio_bench::load::{self, Measurement, Window};

fn start(runtime: &str) -> ServerProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sio-bench-server"));
    command.arg(runtime);
    ServerProcess::spawn(command).expect("the bench server starts")
}

fn value(measurement: &Measurement, name: &str) -> f64 {
    measurement
        .value(name)
        .unwrap_or_else(|| panic!("no figure {name:?} in {measurement:?}"))
}

const WINDOW: Window = Window::single(Duration::from_millis(100), Duration::from_millis(300));

#[test]
fn every_scenario_runs_and_loses_nothing() {
    let server = start("tokio");
    let target = server.target;
    load::run(async {
        let connect = load::connect(target, 50, 10).await.unwrap();
        assert_eq!(value(&connect, "connections dropped while idle"), 0.0);
        assert!(value(&connect, "server CPU per connection (µs)") > 0.0);
        assert!(value(&connect, "setup p99 (ms)") >= value(&connect, "setup p50 (ms)"));

        for ack in [false, true] {
            let [echo] = &load::echo(&[target], 4, ack, WINDOW).await.unwrap()[..] else {
                panic!("one measurement for one server");
            };
            assert!(value(echo, "messages/s") > 0.0, "{echo:?}");
            assert!(value(echo, "server CPU per echo (µs)") > 0.0, "{echo:?}");
            // The steal is read over the measured window, not the setup around it.
            assert!(echo.steal.span >= WINDOW.measure, "{echo:?}");
            assert!(echo.steal.span < WINDOW.measure * 3, "{echo:?}");
        }

        let [polling] = &load::polling_echo(&[target], 3, WINDOW).await.unwrap()[..] else {
            panic!("one measurement for one server");
        };
        assert!(value(polling, "messages/s") > 0.0, "{polling:?}");

        let broadcast = load::broadcast(target, 30, 2, WINDOW, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(value(&broadcast, "messages lost"), 0.0, "{broadcast:?}");
        assert!(value(&broadcast, "deliveries/s") > 0.0, "{broadcast:?}");
    });
}

/// Two servers loaded in turn: each has round trips in its slices, and is measured over them only.
#[test]
fn servers_in_turn_are_measured_over_their_slices_only() {
    let (busy, idle) = (start("tokio"), start("smol"));
    let window = Window {
        warmup: Duration::from_millis(100),
        measure: Duration::from_millis(300),
        slices: 3,
        slice_warmup: Duration::from_millis(50),
    };
    load::run(async {
        let targets = [busy.target, idle.target];
        let measurements = load::echo(&targets, 4, false, window).await.unwrap();
        assert_eq!(measurements.len(), 2);
        for echo in &measurements {
            assert!(value(echo, "messages/s") > 0.0, "{echo:?}");
            assert!(value(echo, "server CPU per echo (µs)") > 0.0, "{echo:?}");
            // Three slices of 100 ms: neither the warmups nor the other server's slices count.
            assert!(echo.steal.span >= window.measure, "{echo:?}");
            assert!(echo.steal.span < window.measure * 2, "{echo:?}");
        }
    });
}
