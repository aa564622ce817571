//! The load generator: the scenarios of `bench/README.md`, each run against one server process on
//! loopback, on one thread (a current-thread tokio runtime: edge-triggered epoll, and no read
//! that is known to find nothing), with the server's CPU time and memory read from `/proc` around
//! the measured window.

pub mod client;
pub mod proc_stats;

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::future::Future;

use tokio::task::{JoinHandle, spawn_local};
use tokio::time::sleep;

use client::{PollingClient, Transport, WsClient};
use proc_stats::{ProcSample, Steal};

/// Runs a scenario on the loader's thread: a current-thread tokio runtime, where scenarios spawn
/// their clients with `spawn_local`.
pub fn run<F: Future>(scenario: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    tokio::task::LocalSet::new().block_on(&runtime, scenario)
}

/// Waits for a client task.
async fn join<T>(task: JoinHandle<T>) -> io::Result<T> {
    task.await.map_err(io::Error::other)
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughput.
    Higher,
    /// Latency, CPU, memory, losses.
    Lower,
}

/// One measured figure of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// What it measures, with its unit.
    pub name: &'static str,
    /// The value.
    pub value: f64,
    /// Which way is better.
    pub better: Better,
}

impl Figure {
    fn new(name: &'static str, value: f64, better: Better) -> Figure {
        Figure {
            name,
            value,
            better,
        }
    }
}

/// What one scenario measured against one server.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The scenario's figures.
    pub figures: Vec<Figure>,
    /// The machine's steal time while they were measured: a reading of the VM's noise, not a
    /// figure of the server.
    pub steal: Steal,
}

impl Measurement {
    /// The value of figure `name`, if the scenario reports it.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value)
    }
}

/// The server under load.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process, for the `/proc` readings.
    pub pid: u32,
}

impl Target {
    fn sample(&self) -> io::Result<ProcSample> {
        ProcSample::read(self.pid)
    }
}

/// How long to warm up before a measured window, and how long it lasts.
///
/// The round-trip scenarios can load several servers in turn ([`echo`], [`polling_echo`]): each
/// server's measured time is cut into `slices`, and the servers take one slice each, the order
/// reversed every other pass. A server's figures then come from the same stretch of time as the
/// others', so that the VM's slow drifts (the same server's echo rate moves by 20% over tens of
/// seconds, `bench/README.md`) fall on every server alike instead of on whichever ran then.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Load before measuring, given to each server before its first slice.
    pub warmup: Duration,
    /// The measured time of each server, over all its slices.
    pub measure: Duration,
    /// How many slices each server's measured time is cut into (0 counts as 1).
    pub slices: u32,
    /// Load before each slice is measured, after the server sat idle during the others' slices.
    pub slice_warmup: Duration,
}

impl Window {
    /// One stretch: `warmup`, then `measure`.
    pub const fn single(warmup: Duration, measure: Duration) -> Window {
        Window {
            warmup,
            measure,
            slices: 1,
            slice_warmup: Duration::ZERO,
        }
    }

    fn slice(&self) -> Duration {
        self.measure / self.slices.max(1)
    }
}

/// Latency samples in microseconds.
#[derive(Debug, Default)]
struct Latencies(RefCell<Vec<u32>>);

impl Latencies {
    fn record(&self, since: Instant) {
        let micros = since.elapsed().as_micros().min(u32::MAX as u128) as u32;
        self.0.borrow_mut().push(micros);
    }

    fn record_micros(&self, micros: u64) {
        self.0.borrow_mut().push(micros.min(u32::MAX as u64) as u32);
    }

    /// The `q` quantile (0..=1), in microseconds; 0 without samples.
    fn quantile(&self, q: f64) -> f64 {
        let mut samples = self.0.borrow_mut();
        if samples.is_empty() {
            return 0.0;
        }
        samples.sort_unstable();
        let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1] as f64
    }
}

/// Where a scenario is: load runs before, during and after the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Warmup,
    Measure,
    Stop,
}

/// Connects `count` WebSocket clients, at most `in_flight` handshakes at a time; also returns
/// each handshake's latency and the first error, if any.
async fn connect_all(
    addr: SocketAddr,
    count: usize,
    in_flight: usize,
) -> io::Result<(Vec<WsClient>, Latencies)> {
    let (token_tx, token_rx) = async_channel::bounded::<()>(in_flight.max(1));
    for _ in 0..in_flight.max(1) {
        let _ = token_tx.try_send(());
    }
    let latencies = Rc::new(Latencies::default());
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let (token_tx, token_rx, latencies) =
            (token_tx.clone(), token_rx.clone(), latencies.clone());
        tasks.push(spawn_local(async move {
            let _ = token_rx.recv().await;
            let start = Instant::now();
            let client = WsClient::connect(addr).await;
            latencies.record(start);
            let _ = token_tx.send(()).await;
            client
        }));
    }
    let mut clients = Vec::with_capacity(count);
    for task in tasks {
        clients.push(join(task).await??);
    }
    drop(token_tx);
    let latencies = Rc::try_unwrap(latencies).unwrap_or_default();
    Ok((clients, latencies))
}

/// The environment variable naming the directory of [`mark`]'s files.
pub const MARKS_DIR: &str = "SIO_BENCH_MARKS";

/// Lets an outside counter (`bench/instructions.sh`, which counts the server's instructions under
/// callgrind) cut its count where a scenario's load starts and ends. With [`MARKS_DIR`] set, writes
/// `units` (connections, round trips or deliveries since the `start` mark) to the file `name` in
/// that directory, then waits until `name.go` appears there; the server is idle meanwhile, so no
/// work of the scenario falls between the counter's cut and the load going on. Without it, does
/// nothing.
async fn mark(name: &str, units: u64) -> io::Result<()> {
    let Some(dir) = std::env::var_os(MARKS_DIR) else {
        return Ok(());
    };
    let dir = std::path::PathBuf::from(dir);
    // Written under another name and renamed, so that the reader never sees half a number.
    let partial = dir.join(format!("{name}.partial"));
    std::fs::write(&partial, format!("{units}\n"))?;
    std::fs::rename(&partial, dir.join(name))?;
    let go = dir.join(format!("{name}.go"));
    while !go.exists() {
        sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn micros_per(cpu_ns: u64, count: u64) -> f64 {
    if count == 0 {
        return 0.0;
    }
    cpu_ns as f64 / 1000.0 / count as f64
}

/// `connect`: `count` WebSocket clients connect to `/`, `in_flight` handshakes at a time; then they
/// stay idle while the server's memory is read.
pub async fn connect(target: Target, count: usize, in_flight: usize) -> io::Result<Measurement> {
    mark("start", 0).await?;
    let before = target.sample()?;
    let start = Instant::now();
    let (clients, latencies) = connect_all(target.addr, count, in_flight).await?;
    let elapsed = start.elapsed();
    let connected = target.sample()?;
    mark("end", clients.len() as u64).await?;
    // Idle: the clients answer pings only. Let the server settle before reading its memory.
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let mut idle = Vec::with_capacity(clients.len());
    for mut client in clients {
        let stop_rx = stop_rx.clone();
        idle.push(spawn_local(async move {
            let stopped = futures_lite::future::or(
                async {
                    let _ = stop_rx.recv().await;
                    true
                },
                async {
                    while client.recv().await.is_ok() {}
                    false
                },
            )
            .await;
            (stopped, client)
        }));
    }
    sleep(Duration::from_secs(2)).await;
    let idle_sample = target.sample()?;
    drop(stop_tx);
    let mut dropped = 0u64;
    for task in idle {
        let (stopped, client) = join(task).await?;
        if !stopped {
            dropped += 1;
        }
        client.close().await;
    }
    let memory = idle_sample.rss_kib.saturating_sub(before.rss_kib) as f64 / count as f64;
    let figures = vec![
        Figure::new(
            "connections/s",
            count as f64 / elapsed.as_secs_f64(),
            Better::Higher,
        ),
        Figure::new(
            "setup p50 (ms)",
            latencies.quantile(0.5) / 1000.0,
            Better::Lower,
        ),
        Figure::new(
            "setup p99 (ms)",
            latencies.quantile(0.99) / 1000.0,
            Better::Lower,
        ),
        Figure::new(
            "server CPU per connection (µs)",
            micros_per(connected.cpu_ns - before.cpu_ns, count as u64),
            Better::Lower,
        ),
        Figure::new("idle memory per connection (KiB)", memory, Better::Lower),
        Figure::new(
            "connections dropped while idle",
            dropped as f64,
            Better::Lower,
        ),
    ];
    Ok(Measurement {
        figures,
        steal: Steal::between(&before, &connected, elapsed),
    })
}

/// Shared counters of a scenario's tasks.
#[derive(Default)]
struct Counters {
    phase: Cell<Option<Phase>>,
    measured: Cell<u64>,
    /// Round trips completed in any phase.
    completed: Cell<u64>,
    latencies: Latencies,
}

impl Counters {
    fn phase(&self) -> Phase {
        self.phase.get().unwrap_or(Phase::Warmup)
    }

    /// A round trip started at `start` ended now: counted if the window is open.
    fn completed(&self, start: Instant) {
        self.completed.set(self.completed.get() + 1);
        if self.phase() == Phase::Measure {
            self.measured.set(self.measured.get() + 1);
            self.latencies.record(start);
        }
    }
}

/// Drives the phases: warmup, then the measured window between two `/proc` readings; returns the
/// readings and the window's real length.
async fn measure_window(
    counters: &Counters,
    target: Target,
    window: Window,
) -> io::Result<(ProcSample, ProcSample, Duration)> {
    sleep(window.warmup).await;
    measure_for(counters, target, window.measure, Phase::Stop).await
}

/// Counts the load for `length` between two `/proc` readings, then sets the phase to `then`;
/// returns the readings and the measured time's real length.
async fn measure_for(
    counters: &Counters,
    target: Target,
    length: Duration,
    then: Phase,
) -> io::Result<(ProcSample, ProcSample, Duration)> {
    let before = target.sample()?;
    let start = Instant::now();
    counters.phase.set(Some(Phase::Measure));
    sleep(length).await;
    counters.phase.set(Some(then));
    let after = target.sample()?;
    Ok((before, after, start.elapsed()))
}

/// The figures of an echo-like scenario: rates and latencies from its measured time (whose steal
/// is `steal`), CPU per echo from `cpu_ns` over `round_trips`.
fn echo_figures(counters: &Counters, cpu_ns: u64, round_trips: u64, steal: Steal) -> Measurement {
    let count = counters.measured.get();
    let elapsed = steal.span;
    let figures = vec![
        Figure::new(
            "messages/s",
            count as f64 / elapsed.as_secs_f64(),
            Better::Higher,
        ),
        Figure::new(
            "round trip p50 (µs)",
            counters.latencies.quantile(0.5),
            Better::Lower,
        ),
        Figure::new(
            "round trip p99 (µs)",
            counters.latencies.quantile(0.99),
            Better::Lower,
        ),
        Figure::new(
            "round trip p99.9 (µs)",
            counters.latencies.quantile(0.999),
            Better::Lower,
        ),
        Figure::new(
            "server CPU per echo (µs)",
            micros_per(cpu_ns, round_trips),
            Better::Lower,
        ),
    ];
    Measurement { figures, steal }
}

/// `echo` (`ack == false`) and `echo-ack`: `count` WebSocket clients per server each keep one event
/// in flight; the server emits it back, or acknowledges it. Several servers are loaded in turn
/// (see [`Window`]); the measurements come in the order of `targets`.
pub async fn echo(
    targets: &[Target],
    count: usize,
    ack: bool,
    window: Window,
) -> io::Result<Vec<Measurement>> {
    let mut groups = Vec::with_capacity(targets.len());
    for target in targets {
        let (clients, _) = connect_all(target.addr, count, 100).await?;
        groups.push((*target, clients));
    }
    round_trips(groups, ack, window).await
}

/// The polling variant of `echo`: each client POSTs an event and GETs the server's emit back.
pub async fn polling_echo(
    targets: &[Target],
    count: usize,
    window: Window,
) -> io::Result<Vec<Measurement>> {
    let mut groups = Vec::with_capacity(targets.len());
    for target in targets {
        let mut clients = Vec::with_capacity(count);
        for _ in 0..count {
            clients.push(PollingClient::connect(target.addr).await?);
        }
        groups.push((*target, clients));
    }
    round_trips(groups, false, window).await
}

/// Whose clients may start a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Nobody's: the last group's round trips are finishing.
    Between,
    /// The group at this index.
    Group(usize),
    /// The scenario is over.
    Stop,
}

/// The clients of one server in a round-trip scenario, and what was measured of it.
#[derive(Default)]
struct Group {
    counters: Counters,
    /// Round trips sent and not yet answered.
    in_flight: Cell<usize>,
    /// Told when `in_flight` falls to zero.
    drained: tokio::sync::Notify,
    /// Server CPU time from the first pass to the end of the last, and the round trips completed
    /// meanwhile. The time between the server's slices counts: work a server leaves for when it is
    /// idle (a garbage collector's) is work its echoes cost.
    cpu_ns: Cell<u64>,
    round_trips: Cell<u64>,
    /// The steal over the measured slices, with their total length.
    steal: Cell<Steal>,
}

impl Group {
    fn add_slice(&self, before: &ProcSample, after: &ProcSample, elapsed: Duration) {
        self.steal
            .set(self.steal.get() + Steal::between(before, after, elapsed));
    }

    fn end_round_trip(&self) {
        self.in_flight.set(self.in_flight.get() - 1);
        if self.in_flight.get() == 0 {
            self.drained.notify_one();
        }
    }
}

/// Each client keeps one `echo` (or `echo-ack`) in flight while its server has the turn, until the
/// scenario ends.
async fn round_trips<C: Transport + 'static>(
    groups: Vec<(Target, Vec<C>)>,
    ack: bool,
    window: Window,
) -> io::Result<Vec<Measurement>> {
    mark("start", 0).await?;
    let (turn_tx, turn_rx) = tokio::sync::watch::channel(Turn::Between);
    let targets: Vec<Target> = groups.iter().map(|(target, _)| *target).collect();
    let states: Vec<Rc<Group>> = groups.iter().map(|_| Rc::default()).collect();
    let mut tasks = Vec::new();
    for (index, (_, clients)) in groups.into_iter().enumerate() {
        for mut client in clients {
            let (group, mut turn) = (states[index].clone(), turn_rx.clone());
            tasks.push(spawn_local(async move {
                let mut seq = 0u64;
                loop {
                    let now = *turn
                        .wait_for(|t| *t == Turn::Group(index) || *t == Turn::Stop)
                        .await
                        .map_err(io::Error::other)?;
                    if now == Turn::Stop {
                        break;
                    }
                    seq += 1;
                    let start = Instant::now();
                    let (packet, answer) = match ack {
                        false => (format!("42[\"echo\",{seq}]"), "42[\"echo\","),
                        true => (format!("42{seq}[\"echo-ack\",{seq}]"), "43"),
                    };
                    group.in_flight.set(group.in_flight.get() + 1);
                    let answered = async {
                        client.send(&packet).await?;
                        while !client.recv().await?.starts_with(answer) {}
                        io::Result::Ok(())
                    }
                    .await;
                    // Ended even when it failed, lest the next server's turn wait for it forever.
                    group.end_round_trip();
                    answered?;
                    group.counters.completed(start);
                }
                io::Result::Ok(client)
            }));
        }
    }
    let turns = take_turns(&targets, &states, &turn_tx, window).await;
    turn_tx.send_replace(Turn::Stop);
    let mut clients = Vec::with_capacity(tasks.len());
    for task in tasks {
        clients.push(join(task).await??);
    }
    turns?;
    // Every round trip is over: the closes stay out of the count between the marks.
    let completed = states.iter().map(|g| g.counters.completed.get()).sum();
    mark("end", completed).await?;
    for client in clients {
        client.close().await;
    }
    Ok(states
        .iter()
        .map(|group| {
            echo_figures(
                &group.counters,
                group.cpu_ns.get(),
                group.round_trips.get(),
                group.steal.get(),
            )
        })
        .collect())
}

/// Gives the groups their turns: a warmup each, then `window.slices` passes in which each group has
/// a slice warmup and a measured slice, the order reversed every other pass. A group's round trips
/// all end before the next group starts, and before the figures over the passes are taken.
async fn take_turns(
    targets: &[Target],
    groups: &[Rc<Group>],
    turn: &tokio::sync::watch::Sender<Turn>,
    window: Window,
) -> io::Result<()> {
    let end_turn = || async move {
        // Copied out: the borrow holds the channel's lock, which `send_replace` takes.
        let now = *turn.borrow();
        if let Turn::Group(current) = now {
            turn.send_replace(Turn::Between);
            let group = &groups[current];
            while group.in_flight.get() > 0 {
                group.drained.notified().await;
            }
        }
    };
    let give = |index: usize| async move {
        if *turn.borrow() != Turn::Group(index) {
            end_turn().await;
            turn.send_replace(Turn::Group(index));
        }
    };
    for index in 0..groups.len() {
        give(index).await;
        sleep(window.warmup).await;
    }
    let mut starts = Vec::with_capacity(groups.len());
    for (group, target) in groups.iter().zip(targets) {
        starts.push((target.sample()?.cpu_ns, group.counters.completed.get()));
    }
    for pass in 0..window.slices.max(1) {
        let order: Vec<usize> = match pass % 2 {
            0 => (0..groups.len()).collect(),
            _ => (0..groups.len()).rev().collect(),
        };
        for index in order {
            give(index).await;
            let (group, target) = (&groups[index], targets[index]);
            sleep(window.slice_warmup).await;
            let (before, after, elapsed) =
                measure_for(&group.counters, target, window.slice(), Phase::Warmup).await?;
            group.add_slice(&before, &after, elapsed);
        }
    }
    end_turn().await;
    for ((group, target), (cpu_ns, completed)) in groups.iter().zip(targets).zip(starts) {
        group
            .cpu_ns
            .set(target.sample()?.cpu_ns.saturating_sub(cpu_ns));
        group
            .round_trips
            .set(group.counters.completed.get() - completed);
    }
    Ok(())
}

/// Reads `42["broadcast",[sender,sent_at]]`.
fn parse_broadcast(packet: &str) -> Option<(usize, u64)> {
    let rest = packet.strip_prefix("42[\"broadcast\",[")?;
    let (sender, rest) = rest.split_once(',')?;
    let sent_at = rest.split(']').next()?;
    Some((sender.parse().ok()?, sent_at.parse().ok()?))
}

/// `broadcast`: `count` WebSocket clients join the room `bench`; `senders` of them each keep one
/// message in flight (the next is sent when the sender receives its own). The server emits each
/// to the room. After the window, the loader waits until every delivery arrived (at most
/// `drain`) and reports the losses.
pub async fn broadcast(
    target: Target,
    count: usize,
    senders: usize,
    window: Window,
    drain: Duration,
) -> io::Result<Measurement> {
    let (mut clients, _) = connect_all(target.addr, count, 200).await?;
    for client in &mut clients {
        client.send("420[\"join\",\"bench\"]").await?;
    }
    for client in &mut clients {
        while !client.recv().await?.starts_with("430") {}
    }
    mark("start", 0).await?;
    let epoch = Instant::now();
    let counters = Rc::new(Counters::default());
    let sent = Rc::new(Cell::new(0u64));
    let received = Rc::new(Cell::new(0u64));
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let mut tasks = Vec::with_capacity(count);
    for (index, mut client) in clients.into_iter().enumerate() {
        let (counters, sent, received, stop_rx) = (
            counters.clone(),
            sent.clone(),
            received.clone(),
            stop_rx.clone(),
        );
        tasks.push(spawn_local(async move {
            let send_next = |sent: &Cell<u64>| {
                sent.set(sent.get() + 1);
                let now = epoch.elapsed().as_micros() as u64;
                format!("42[\"broadcast\",[{index},{now}]]")
            };
            if index < senders {
                client.send(&send_next(&sent)).await?;
            }
            let work = async {
                loop {
                    let packet = client.recv().await?;
                    let Some((from, sent_at)) = parse_broadcast(&packet) else {
                        continue;
                    };
                    received.set(received.get() + 1);
                    if counters.phase() == Phase::Measure {
                        counters.measured.set(counters.measured.get() + 1);
                        let now = epoch.elapsed().as_micros() as u64;
                        counters
                            .latencies
                            .record_micros(now.saturating_sub(sent_at));
                    }
                    if from == index && counters.phase() != Phase::Stop {
                        client.send(&send_next(&sent)).await?;
                    }
                }
            };
            let stop = async {
                let _ = stop_rx.recv().await;
                io::Result::Ok(())
            };
            let result = futures_lite::future::or(stop, work).await;
            client.close().await;
            result
        }));
    }
    let (before, after, elapsed) = measure_window(&counters, target, window).await?;
    // Wait for the deliveries still on their way.
    let deadline = Instant::now() + drain;
    while received.get() < sent.get() * count as u64 && Instant::now() < deadline {
        sleep(Duration::from_millis(20)).await;
    }
    let lost = (sent.get() * count as u64).saturating_sub(received.get());
    mark("end", received.get()).await?;
    drop(stop_tx);
    for task in tasks {
        join(task).await??;
    }
    let deliveries = counters.measured.get();
    let figures = vec![
        Figure::new(
            "deliveries/s",
            deliveries as f64 / elapsed.as_secs_f64(),
            Better::Higher,
        ),
        Figure::new(
            "send to receipt p50 (ms)",
            counters.latencies.quantile(0.5) / 1000.0,
            Better::Lower,
        ),
        Figure::new(
            "send to receipt p99 (ms)",
            counters.latencies.quantile(0.99) / 1000.0,
            Better::Lower,
        ),
        Figure::new(
            "server CPU per delivery (µs)",
            micros_per(after.cpu_ns - before.cpu_ns, deliveries),
            Better::Lower,
        ),
        Figure::new("messages lost", lost as f64, Better::Lower),
    ];
    Ok(Measurement {
        figures,
        steal: Steal::between(&before, &after, elapsed),
    })
}
