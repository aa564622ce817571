//! The load generator against the sio bench server (tokio), at small sizes: every scenario runs,
//! reads the server's `/proc` figures, and loses nothing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sio_bench::load::{self, Figure, Target, Window};
use smol::LocalExecutor;

struct Server(Child, Target);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(runtime: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sio-bench-server"))
        .arg(runtime)
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the bench server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the server prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let pid = child.id();
    Server(child, Target { addr, pid })
}

fn value(figures: &[Figure], name: &str) -> f64 {
    figures
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no figure {name:?} in {figures:?}"))
        .value
}

const WINDOW: Window = Window {
    warmup: Duration::from_millis(100),
    measure: Duration::from_millis(300),
};

#[test]
fn every_scenario_runs_and_loses_nothing() {
    let server = start("tokio");
    let target = server.1;
    let executor = LocalExecutor::new();
    async_io::block_on(executor.run(async {
        let connect = load::connect(&executor, target, 50, 10).await.unwrap();
        assert_eq!(value(&connect, "connections dropped while idle"), 0.0);
        assert!(value(&connect, "server CPU per connection (µs)") > 0.0);
        assert!(value(&connect, "setup p99 (ms)") >= value(&connect, "setup p50 (ms)"));

        for ack in [false, true] {
            let echo = load::echo(&executor, target, 4, ack, WINDOW).await.unwrap();
            assert!(value(&echo, "messages/s") > 0.0, "{echo:?}");
            assert!(value(&echo, "server CPU per echo (µs)") > 0.0, "{echo:?}");
        }

        let polling = load::polling_echo(&executor, target, 3, WINDOW)
            .await
            .unwrap();
        assert!(value(&polling, "messages/s") > 0.0, "{polling:?}");

        let broadcast = load::broadcast(&executor, target, 30, 2, WINDOW, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(value(&broadcast, "messages lost"), 0.0, "{broadcast:?}");
        assert!(value(&broadcast, "deliveries/s") > 0.0, "{broadcast:?}");
    }));
}
