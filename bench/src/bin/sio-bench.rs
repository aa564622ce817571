//! The load benchmark runner: starts each server under test pinned to core 0, runs every scenario
//! against it from this process, and writes a markdown table of the medians with the ratios of
//! the sio runtimes to the Node reference and to socketioxide. `bench/run.sh` builds everything
//! and runs this pinned to core 1; `bench/README.md` has the method.
//!
//! ```text
//! sio-bench [--runs N] [--quick] [--servers a,b,..] [--scenarios a,b,..] [--out FILE]
//!           [--attach ADDR,PID] [--max-steal PERCENT] [--retries N] [--sequential]
//!           [--echo-clients N] [--slices N]
//! ```
//!
//! `--attach` loads a server started by hand (under a profiler, say) instead of starting one.
//!
//! `--echo-clients N` runs `echo` and `echo-ack` with N clients instead of 100 (the size of the
//! bar of issue 7): how each server's cost per echo moves with the connections it serves.
//!
//! `--slices N` cuts each server's measured time in the round-trip scenarios into N turns instead
//! of 10 (2 with `--quick`); the load before each turn shrinks with it, so that a run lasts as
//! long.
//!
//! In `echo`, `echo-ack` and `polling-echo` every server runs at once, each with its clients
//! connected, and the loader loads them in turn, one slice at a time (`load::Window`), so that the
//! VM's drifts over a run fall on every server alike. `--sequential` measures each server in one
//! stretch of its own instead, as the other scenarios do.
//!
//! A measured window in which the hypervisor took more than `--max-steal` percent of the machine's
//! CPUs (steal time, default 1%, and more than one 10 ms tick) is measured again with a fresh
//! server (with `--attach`, the same one), at most `--retries` times (default 2), and the attempt
//! with the least steal counts. On bare metal there is no steal and nothing is measured twice.
//!
//! With `SIO_BENCH_MARKS` set (`bench/instructions.sh`), nothing is measured again.
//!
//! `sio-tokio-control` is sio-tokio again, run last in each round: its ratio to sio-tokio is what
//! the same server measures against itself in the same run, the noise floor of every other ratio.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use sio_bench::ServerProcess;
use sio_bench::load::{self, Better, Figure, Measurement, Target, Window};

const SERVERS: [&str; 6] = [
    "sio-tokio",
    "sio-smol",
    "sio-async-std",
    "node",
    "socketioxide",
    CONTROL,
];

/// The second sio-tokio: the same binary and settings, measured as a server of its own.
const CONTROL: &str = "sio-tokio-control";

/// One scenario with its sizes.
#[derive(Clone, Copy)]
enum Kind {
    Connect { count: usize, in_flight: usize },
    Echo { count: usize, ack: bool },
    PollingEcho { count: usize },
    Broadcast { count: usize, senders: usize },
}

struct Scenario {
    name: &'static str,
    kind: Kind,
}

impl Scenario {
    fn title(&self) -> String {
        match self.kind {
            Kind::Connect { count, in_flight } => format!(
                "{}: {count} WebSocket clients, {in_flight} handshakes in flight",
                self.name
            ),
            Kind::Echo { count, .. } => {
                format!(
                    "{}: {count} WebSocket clients, one event in flight each",
                    self.name
                )
            }
            Kind::PollingEcho { count } => {
                format!(
                    "{}: {count} polling clients, one event in flight each",
                    self.name
                )
            }
            Kind::Broadcast { count, senders } => format!(
                "{}: {count} WebSocket clients in one room, {senders} senders with one message in flight each",
                self.name
            ),
        }
    }
}

fn scenarios(quick: bool, echo_clients: Option<usize>) -> Vec<Scenario> {
    let scale = |full: usize, small: usize| if quick { small } else { full };
    let echo_clients = echo_clients.unwrap_or(scale(100, 20));
    vec![
        Scenario {
            name: "connect",
            kind: Kind::Connect {
                count: scale(10_000, 1_000),
                in_flight: scale(200, 100),
            },
        },
        Scenario {
            name: "echo",
            kind: Kind::Echo {
                count: echo_clients,
                ack: false,
            },
        },
        Scenario {
            name: "echo-ack",
            kind: Kind::Echo {
                count: echo_clients,
                ack: true,
            },
        },
        Scenario {
            name: "polling-echo",
            kind: Kind::PollingEcho {
                count: scale(100, 20),
            },
        },
        Scenario {
            name: "broadcast",
            kind: Kind::Broadcast {
                count: scale(1_000, 200),
                senders: scale(10, 4),
            },
        },
        Scenario {
            name: "broadcast-10k",
            kind: Kind::Broadcast {
                count: scale(10_000, 2_000),
                senders: 2,
            },
        },
    ]
}

struct Options {
    runs: usize,
    quick: bool,
    servers: Vec<String>,
    scenarios: Option<Vec<String>>,
    out: String,
    attach: Option<Target>,
    /// Steal above this share of the CPUs, in percent, has a window measured again.
    max_steal: f64,
    /// How many times a window is measured again at most.
    retries: usize,
    /// No servers in turn: each is measured in one stretch of its own.
    sequential: bool,
    /// Clients of `echo` and `echo-ack`, when not the default.
    echo_clients: Option<usize>,
    /// Turns of each server in the round-trip scenarios, when not the default.
    slices: Option<u32>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        runs: 3,
        quick: false,
        servers: SERVERS.iter().map(|s| s.to_string()).collect(),
        scenarios: None,
        out: "bench/results.md".to_owned(),
        attach: None,
        max_steal: 1.0,
        retries: 2,
        sequential: false,
        echo_clients: None,
        slices: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--runs" => options.runs = value()?.parse().map_err(|_| "--runs: a number")?,
            "--quick" => options.quick = true,
            "--sequential" => options.sequential = true,
            "--echo-clients" => {
                let count = value()?.parse().map_err(|_| "--echo-clients: a number")?;
                options.echo_clients = Some(count).filter(|&n: &usize| n > 0);
            }
            "--slices" => {
                let count = value()?.parse().map_err(|_| "--slices: a number")?;
                options.slices = Some(count).filter(|&n: &u32| n > 0);
            }
            "--servers" => options.servers = value()?.split(',').map(str::to_owned).collect(),
            "--scenarios" => {
                options.scenarios = Some(value()?.split(',').map(str::to_owned).collect())
            }
            "--out" => options.out = value()?,
            "--max-steal" => {
                options.max_steal = value()?.parse().map_err(|_| "--max-steal: a percentage")?
            }
            "--retries" => options.retries = value()?.parse().map_err(|_| "--retries: a number")?,
            "--attach" => {
                let text = value()?;
                let target = text.split_once(',').and_then(|(addr, pid)| {
                    Some(Target {
                        addr: addr.parse().ok()?,
                        pid: pid.parse().ok()?,
                    })
                });
                options.attach = Some(target.ok_or("--attach: ADDR,PID")?);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    // A count between the marks (bench/instructions.sh) covers one attempt: a second one would
    // write its own units over the first's while the count stayed the first's.
    if std::env::var_os(load::MARKS_DIR).is_some() {
        options.retries = 0;
    }
    if let Some(unknown) = options
        .servers
        .iter()
        .find(|s| !SERVERS.contains(&s.as_str()))
    {
        return Err(format!("unknown server {unknown} (one of {SERVERS:?})"));
    }
    Ok(options)
}

/// Starts server `name` pinned to core 0 (this process runs on core 1, see bench/run.sh).
fn start_server(name: &str) -> std::io::Result<ServerProcess> {
    let bin_dir = std::env::current_exe()?
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let sio = bin_dir.join("sio-bench-server").display().to_string();
    let (program, args, env): (String, Vec<&str>, Vec<(&str, &str)>) = match name {
        "sio-tokio" | CONTROL => (sio, vec!["tokio"], vec![]),
        "sio-smol" => (sio, vec!["smol"], vec![("SMOL_THREADS", "1")]),
        "sio-async-std" => (
            sio,
            vec!["async-std"],
            vec![("ASYNC_STD_THREAD_COUNT", "1")],
        ),
        "node" => ("node".to_owned(), vec!["bench/node/server.mjs"], vec![]),
        _ => (
            bin_dir
                .join("socketioxide-bench-server")
                .display()
                .to_string(),
            vec![],
            vec![],
        ),
    };
    // taskset execs the server, so the child's pid is the server's.
    let mut command = Command::new("taskset");
    command
        .args(["-c", "0"])
        .arg(&program)
        .args(&args)
        .envs(env);
    ServerProcess::spawn(command)
}

/// Whether `scenario` loads `servers` in turn, all running at once, rather than one after the other.
/// Only the round-trip scenarios can: their load moves from one server to the next at once, while
/// `connect` measures a server's whole memory and `broadcast` waits for deliveries to drain.
fn in_turn(scenario: &Scenario, servers: usize, options: &Options) -> bool {
    matches!(scenario.kind, Kind::Echo { .. } | Kind::PollingEcho { .. })
        && turns_allowed(servers, options)
}

/// Whether `servers` may take turns at all: not one server, not `--sequential`, not a server
/// attached to (it is one process), not counted between marks (a count covers one server).
fn turns_allowed(servers: usize, options: &Options) -> bool {
    servers > 1
        && !options.sequential
        && options.attach.is_none()
        && std::env::var_os(load::MARKS_DIR).is_none()
}

/// The window of a round-trip scenario: servers in turn get ten slices of half a second, each after
/// 200 ms of load (100 ms and two slices in quick runs), or `slices` slices with as much load and
/// measured time in all.
fn window(quick: bool, in_turn: bool, slices: Option<u32>) -> Window {
    let (warmup, measure) = match quick {
        true => (Duration::from_millis(500), Duration::from_secs(1)),
        false => (Duration::from_secs(1), Duration::from_secs(5)),
    };
    let (default, slice_warmup) = match quick {
        true => (2, Duration::from_millis(100)),
        false => (10, Duration::from_millis(200)),
    };
    let slices = slices.unwrap_or(default);
    match in_turn {
        false => Window::single(warmup, measure),
        true => Window {
            warmup,
            measure,
            slices,
            slice_warmup: slice_warmup * default / slices,
        },
    }
}

/// Measures `scenario` against `servers`, each started afresh (or the one attached to); several
/// only for a scenario they take in turn. The measurements come in the order of `servers`.
fn run_scenario(
    scenario: &Scenario,
    servers: &[&str],
    options: &Options,
) -> std::io::Result<Vec<Measurement>> {
    let window = window(options.quick, servers.len() > 1, options.slices);
    let mut processes = Vec::new();
    let targets: Vec<Target> = match options.attach {
        Some(target) => vec![target; servers.len()],
        None => {
            for server in servers {
                processes.push(start_server(server)?);
            }
            processes.iter().map(|p| p.target).collect()
        }
    };
    let single = |measurement: std::io::Result<Measurement>| measurement.map(|m| vec![m]);
    let result = load::run(async {
        match scenario.kind {
            Kind::Connect { count, in_flight } => {
                single(load::connect(targets[0], count, in_flight).await)
            }
            Kind::Echo { count, ack } => load::echo(&targets, count, ack, window).await,
            Kind::PollingEcho { count } => load::polling_echo(&targets, count, window).await,
            Kind::Broadcast { count, senders } => single(
                load::broadcast(targets[0], count, senders, window, Duration::from_secs(10)).await,
            ),
        }
    });
    drop(processes);
    result
}

/// Measurements of a scenario against one server, or several in turn, with the steal of every
/// attempt.
struct Attempts {
    /// The attempt with the least steal, a measurement for each server.
    kept: Vec<Measurement>,
    /// The steal of each attempt in order, in percent of the machine's CPUs.
    steals: Vec<f64>,
}

/// The steal over an attempt's measured time, every server's together.
fn steal_of(measurements: &[Measurement]) -> Option<load::proc_stats::Steal> {
    measurements.iter().map(|m| m.steal).reduce(|a, b| a + b)
}

/// Runs a scenario against `servers`, and again while the hypervisor's steal in the measured time
/// is above `--max-steal`, at most `--retries` more times; keeps the attempt with the least steal.
fn run_attempts(
    scenario: &Scenario,
    servers: &[&str],
    options: &Options,
) -> std::io::Result<Attempts> {
    let percent = |m: &[Measurement]| steal_of(m).map_or(0.0, |s| s.percent());
    let mut kept = run_scenario(scenario, servers, options)?;
    let mut steals = vec![percent(&kept)];
    while steals.len() <= options.retries
        && steal_of(&kept).is_some_and(|s| too_stolen(&s, options))
    {
        // A failed attempt leaves the one already measured standing.
        let again = match run_scenario(scenario, servers, options) {
            Ok(again) => again,
            Err(error) => {
                eprint!("(measuring again failed: {error}) ");
                break;
            }
        };
        steals.push(percent(&again));
        if percent(&again) < percent(&kept) {
            kept = again;
        }
    }
    Ok(Attempts { kept, steals })
}

/// Whether a window lost enough to steal to be measured again: more than `--max-steal` percent of
/// the CPUs, and more than one clock tick of `/proc/stat` (10 ms), which alone is several percent
/// of a short window (a quick `connect` takes about 0.1 s).
fn too_stolen(steal: &load::proc_stats::Steal, options: &Options) -> bool {
    steal.percent() > options.max_steal && steal.stolen > Duration::from_millis(10)
}

/// One figure of a scenario: its name, which way is better, and each server's values over the runs.
type Row = (&'static str, Better, BTreeMap<String, Vec<f64>>);

/// One scenario measured against one server, or several in turn, in one run: which, and the steal
/// of each attempt.
struct MeasuredWindow {
    /// "run 2, echo on node", or "run 2, echo on 6 servers in turn".
    label: String,
    /// In percent of the machine's CPUs, in the order of the attempts.
    steals: Vec<f64>,
}

impl MeasuredWindow {
    /// The steal of the attempt that counts: the least.
    fn kept(&self) -> f64 {
        self.steals.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

/// Every figure of every server, over the runs.
#[derive(Default)]
struct Results {
    /// scenario → its figures, in the order the scenario reports them.
    figures: BTreeMap<&'static str, Vec<Row>>,
    /// Every window that was measured, in order.
    windows: Vec<MeasuredWindow>,
    errors: Vec<String>,
}

impl Results {
    fn add(&mut self, scenario: &'static str, server: &str, figures: Vec<Figure>) {
        let rows = self.figures.entry(scenario).or_default();
        for figure in figures {
            let row = match rows.iter().position(|(name, _, _)| *name == figure.name) {
                Some(i) => &mut rows[i],
                None => {
                    rows.push((figure.name, figure.better, BTreeMap::new()));
                    rows.last_mut().expect("just pushed")
                }
            };
            row.2
                .entry(server.to_owned())
                .or_default()
                .push(figure.value);
        }
    }

    fn median(&self, scenario: &str, figure: &str, server: &str) -> Option<f64> {
        let (_, _, values) = self
            .figures
            .get(scenario)?
            .iter()
            .find(|(name, _, _)| *name == figure)?;
        let mut values = values.get(server)?.clone();
        values.sort_by(f64::total_cmp);
        Some(values[values.len() / 2])
    }
}

fn format_value(value: f64) -> String {
    if value == 0.0 {
        "0".to_owned()
    } else if value.abs() >= 1000.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn ratio(results: &Results, scenario: &str, figure: &str, a: &str, b: &str) -> Option<f64> {
    let a = results.median(scenario, figure, a)?;
    let b = results.median(scenario, figure, b)?;
    (b != 0.0).then(|| a / b)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    format!("{cpu}, {cores} cores visible to the loader, Linux {kernel}")
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// One line of the bar of issue 7: what sio-tokio measured, and what the control measured the same
/// way in the same run.
struct BarLine {
    what: String,
    measured: String,
    met: Option<bool>,
    /// The same measure of sio-tokio-control, sio-tokio again: how far the run's noise alone
    /// moves it.
    control: String,
}

/// The lines of the bar of issue 7, checked against the medians.
fn bar(results: &Results) -> Vec<BarLine> {
    let mut lines = Vec::new();
    let fmt = |v: Option<f64>| v.map_or("n/a".to_owned(), format_value);
    let memory = |server| results.median("connect", "idle memory per connection (KiB)", server);
    lines.push(BarLine {
        what: "idle memory per websocket connection ≤ 8 KiB".to_owned(),
        measured: format!("{} KiB", fmt(memory("sio-tokio"))),
        met: memory("sio-tokio").map(|m| m <= 8.0),
        control: format!("{} KiB", fmt(memory(CONTROL))),
    });
    let mut versus = |what: &str, scenario: &str, figure: &str, node: f64, sxd: f64| {
        let to = |server, other| ratio(results, scenario, figure, server, other);
        let text = |server| {
            format!(
                "{} × Node, {} × socketioxide",
                fmt(to(server, "node")),
                fmt(to(server, "socketioxide"))
            )
        };
        lines.push(BarLine {
            what: format!("{what} ≤ {node} × Node and ≤ {sxd} × socketioxide"),
            measured: text("sio-tokio"),
            met: to("sio-tokio", "node")
                .zip(to("sio-tokio", "socketioxide"))
                .map(|(n, s)| n <= node && s <= sxd),
            control: text(CONTROL),
        });
    };
    versus(
        "server CPU per connection",
        "connect",
        "server CPU per connection (µs)",
        0.25,
        0.75,
    );
    versus(
        "server CPU per echo round trip",
        "echo",
        "server CPU per echo (µs)",
        0.33,
        0.8,
    );
    versus(
        "server CPU per delivered broadcast message (1,000 in the room)",
        "broadcast",
        "server CPU per delivery (µs)",
        0.4,
        0.65,
    );
    let p99 = |server| {
        ratio(
            results,
            "echo",
            "round trip p99 (µs)",
            server,
            "socketioxide",
        )
    };
    lines.push(BarLine {
        what: "echo round trip p99 ≤ socketioxide".to_owned(),
        measured: format!("{} × socketioxide", fmt(p99("sio-tokio"))),
        met: p99("sio-tokio").map(|r| r <= 1.0),
        control: format!("{} × socketioxide", fmt(p99(CONTROL))),
    });
    let lost = |server| results.median("broadcast-10k", "messages lost", server);
    lines.push(BarLine {
        what: "broadcast to 10,000 sockets: no message lost".to_owned(),
        measured: format!("{} lost", fmt(lost("sio-tokio"))),
        met: lost("sio-tokio").map(|l| l == 0.0),
        control: format!("{} lost", fmt(lost(CONTROL))),
    });
    // The control's own worst figure, the same for both lines.
    let control_worst = worst_against_tokio(results, CONTROL);
    let control_worst_text = format!(
        "worst {} × ({})",
        fmt(control_worst.as_ref().map(|c| c.distance)),
        control_worst
            .as_ref()
            .map_or("n/a".to_owned(), Furthest::label),
    );
    for other in ["sio-smol", "sio-async-std"] {
        let worst = worst_against_tokio(results, other);
        // The control on the same figure, and the control's own worst.
        let control = match &worst {
            Some(w) => format!(
                "{} × on that figure; {control_worst_text}",
                fmt(distance_to_tokio(
                    results, CONTROL, w.scenario, w.figure, w.better
                )),
            ),
            None => "n/a".to_owned(),
        };
        lines.push(BarLine {
            what: format!("{other} within 1.2 × tokio on every figure"),
            measured: worst.as_ref().map_or("n/a".to_owned(), |w| {
                format!("worst {} × ({})", format_value(w.distance), w.label())
            }),
            met: worst.map(|w| w.distance <= 1.2),
            control,
        });
    }
    lines
}

/// A figure of one server, and how far it is from sio-tokio's.
struct Furthest {
    distance: f64,
    scenario: &'static str,
    figure: &'static str,
    better: Better,
}

impl Furthest {
    fn label(&self) -> String {
        format!("{}: {}", self.scenario, self.figure)
    }
}

/// How many times worse than sio-tokio's `other`'s figure is (above 1 is worse whichever way the
/// figure is better).
fn times_worse(ratio: f64, better: Better) -> f64 {
    match better {
        Better::Lower => ratio,
        Better::Higher => 1.0 / ratio,
    }
}

/// [`times_worse`] for one figure of `other`.
fn distance_to_tokio(
    results: &Results,
    other: &str,
    scenario: &str,
    figure: &str,
    better: Better,
) -> Option<f64> {
    ratio(results, scenario, figure, other, "sio-tokio").map(|r| times_worse(r, better))
}

/// The figure where `other` is furthest behind sio-tokio, by [`times_worse`].
fn worst_against_tokio(results: &Results, other: &str) -> Option<Furthest> {
    furthest_from_tokio(results, other, times_worse)
}

/// The figure where `other` is furthest from sio-tokio either way, as a factor of at least 1: for
/// the control, the same server, a figure better than sio-tokio's is as much noise as a worse one.
fn spread_from_tokio(results: &Results, other: &str) -> Option<Furthest> {
    furthest_from_tokio(results, other, |r, _| r.max(1.0 / r))
}

/// The figure with the largest `distance` of `other`'s ratio to sio-tokio.
fn furthest_from_tokio(
    results: &Results,
    other: &str,
    distance: impl Fn(f64, Better) -> f64,
) -> Option<Furthest> {
    let mut worst: Option<Furthest> = None;
    for (scenario, rows) in &results.figures {
        for (figure, better, _) in rows {
            let Some(r) = ratio(results, scenario, figure, other, "sio-tokio") else {
                continue;
            };
            let d = distance(r, *better);
            if worst.as_ref().is_none_or(|w| d > w.distance) {
                worst = Some(Furthest {
                    distance: d,
                    scenario,
                    figure,
                    better: *better,
                });
            }
        }
    }
    worst
}

/// What the hypervisor took during the windows, and which were measured again for it.
fn steal_line(results: &Results, options: &Options) -> Option<String> {
    let mut kept: Vec<(f64, &str)> = results
        .windows
        .iter()
        .map(|w| (w.kept(), w.label.as_str()))
        .collect();
    if kept.is_empty() {
        return None;
    }
    let again = results
        .windows
        .iter()
        .filter(|w| w.steals.len() > 1)
        .count();
    kept.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median = kept[kept.len() / 2].0;
    let (worst, worst_label) = kept[kept.len() - 1];
    let policy = match options.retries {
        0 => "no window was measured again".to_owned(),
        retries => format!(
            "a window where it was above {}% of the machine's CPUs (and one 10 ms tick) was measured again, at most {retries} times, and the attempt with the least steal counts; {again} of {} windows were measured again",
            format_value(options.max_steal),
            kept.len(),
        ),
    };
    Some(format!(
        "Hypervisor steal (the CPU time the VM's neighbours took, see `bench/README.md`): {policy}. Over the windows that count ({}; failed ones are not among them), steal was {}% at the median and {}% at most ({worst_label}).\n\n",
        kept.len(),
        format_value(median),
        format_value(worst),
    ))
}

/// How the round-trip scenarios shared the time among the servers.
fn turns_line(options: &Options) -> String {
    let window = window(options.quick, true, options.slices);
    match turns_allowed(options.servers.len(), options) {
        false => "each server measured in one stretch of its own".to_owned(),
        true => format!(
            "echo, echo-ack and polling-echo: every server running at once, loaded in turn, {} slices of {} ms each after {} ms of load, the order reversed every other pass; the other scenarios: one server after the other",
            window.slices,
            (window.measure / window.slices).as_millis(),
            window.slice_warmup.as_millis(),
        ),
    }
}

fn report(results: &Results, options: &Options, scenarios: &[Scenario]) -> String {
    let mut out = String::new();
    let servers: Vec<&str> = SERVERS
        .iter()
        .copied()
        .filter(|s| options.servers.iter().any(|o| o == s))
        .collect();
    out.push_str("# sio load benchmark\n\n");
    out.push_str(&format!(
        "- date: {}\n- machine: {}\n- runs: {} (each figure is the median){}\n- each server pinned to core 0 with taskset, the loader to core 1; a fresh server process for each scenario\n- {}\n- command: `bash bench/run.sh{}`\n\n",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        machine(),
        options.runs,
        if options.quick { ", quick sizes" } else { "" },
        turns_line(options),
        std::env::args()
            .skip(1)
            .map(|a| format!(" {a}"))
            .collect::<String>(),
    ));
    if let Some(line) = steal_line(results, options) {
        out.push_str(&line);
    }
    out.push_str("Ratios divide the sio figure by the other server's: below 1 is better for CPU, memory and latency, above 1 for throughput.\n\n");
    out.push_str(&format!("## The bar (issue 7, sio on tokio)\n\nThe last column measures {CONTROL}, sio-tokio again, the same way: what the run's noise alone does to the same server.\n\n| bar | measured | met | {CONTROL}, the same way |\n|---|---|---|---|\n"));
    for line in bar(results) {
        let met = match line.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        out.push_str(&format!(
            "| {} | {} | {met} | {} |\n",
            line.what, line.measured, line.control
        ));
    }
    if let Some(spread) = spread_from_tokio(results, CONTROL) {
        out.push_str(&format!(
            "\nNoise floor, to read the ratios against: {CONTROL}, the same server run again in each round, against sio-tokio: apart by up to {} × either way ({}).\n",
            format_value(spread.distance),
            spread.label(),
        ));
    }
    let ratio_columns: Vec<(&str, &str)> = [
        ("sio-tokio", "node"),
        ("sio-tokio", "socketioxide"),
        ("sio-smol", "node"),
        ("sio-smol", "socketioxide"),
        ("sio-async-std", "node"),
        ("sio-async-std", "socketioxide"),
        ("sio-smol", "sio-tokio"),
        ("sio-async-std", "sio-tokio"),
        (CONTROL, "sio-tokio"),
    ]
    .into_iter()
    .filter(|(a, b)| servers.contains(a) && servers.contains(b))
    .collect();
    for scenario in scenarios {
        let Some(rows) = results.figures.get(scenario.name) else {
            continue;
        };
        out.push_str(&format!("\n## {}\n\n| figure |", scenario.title()));
        for server in &servers {
            out.push_str(&format!(" {server} |"));
        }
        for (a, b) in &ratio_columns {
            out.push_str(&format!(" {} / {} |", a.trim_start_matches("sio-"), b));
        }
        out.push_str("\n|---|");
        for _ in 0..servers.len() + ratio_columns.len() {
            out.push_str("---:|");
        }
        out.push('\n');
        for (figure, _, _) in rows {
            out.push_str(&format!("| {figure} |"));
            for server in &servers {
                let value = results.median(scenario.name, figure, server);
                out.push_str(&format!(
                    " {} |",
                    value.map_or("error".to_owned(), format_value)
                ));
            }
            for (a, b) in &ratio_columns {
                let r = ratio(results, scenario.name, figure, a, b);
                out.push_str(&format!(
                    " {} |",
                    r.map_or("–".to_owned(), |r| format!("{r:.2}"))
                ));
            }
            out.push('\n');
        }
    }
    if !results.errors.is_empty() {
        out.push_str("\n## Errors\n\n");
        for error in &results.errors {
            out.push_str(&format!("- {error}\n"));
        }
    }
    out
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("sio-bench: {message}");
            std::process::exit(2);
        }
    };
    let scenarios: Vec<Scenario> = scenarios(options.quick, options.echo_clients)
        .into_iter()
        .filter(|s| {
            options
                .scenarios
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == s.name))
        })
        .collect();
    let mut results = Results::default();
    let servers: Vec<&str> = options.servers.iter().map(String::as_str).collect();
    for run in 1..=options.runs {
        for scenario in &scenarios {
            let batches: Vec<&[&str]> = match in_turn(scenario, servers.len(), &options) {
                true => vec![&servers[..]],
                false => servers.chunks(1).collect(),
            };
            for batch in batches {
                let on = match batch {
                    [server] => server.to_string(),
                    _ => format!("{} servers in turn", batch.len()),
                };
                eprint!("run {run}/{}: {} on {on} ... ", options.runs, scenario.name);
                let _ = std::io::stderr().flush();
                let label = format!("run {run}, {} on {on}", scenario.name);
                match run_attempts(scenario, batch, &options) {
                    Ok(Attempts { kept, steals }) => {
                        let shown: Vec<String> = steals
                            .iter()
                            .map(|s| format!("{}%", format_value(*s)))
                            .collect();
                        for (server, measurement) in batch.iter().zip(kept) {
                            let summary: Vec<String> = measurement
                                .figures
                                .iter()
                                .map(|f| format!("{} {}", f.name, format_value(f.value)))
                                .collect();
                            if batch.len() > 1 {
                                eprint!("\n  {server}: ");
                            }
                            eprint!("{}", summary.join(", "));
                            results.add(scenario.name, server, measurement.figures);
                        }
                        eprintln!("; steal {}", shown.join(", "));
                        results.windows.push(MeasuredWindow { label, steals });
                    }
                    Err(error) => {
                        eprintln!("error: {error}");
                        results.errors.push(format!("{label}: {error}"));
                    }
                }
            }
        }
    }
    let report = report(&results, &options, &scenarios);
    if let Err(error) = std::fs::write(&options.out, &report) {
        eprintln!("sio-bench: cannot write {}: {error}", options.out);
        std::process::exit(1);
    }
    print!("{report}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(name: &'static str, value: f64, better: Better) -> Figure {
        Figure {
            name,
            value,
            better,
        }
    }

    /// One run of `echo`: CPU per echo, p99.9 and rate of each server.
    fn echo_run(results: &mut Results, figures: &[(&str, f64, f64, f64)]) {
        for &(server, cpu, p999, rate) in figures {
            let figures = vec![
                figure("server CPU per echo (µs)", cpu, Better::Lower),
                figure("round trip p99.9 (µs)", p999, Better::Lower),
                figure("messages/s", rate, Better::Higher),
            ];
            results.add("echo", server, figures);
        }
    }

    /// More turns are shorter, and so is the load before each: a run lasts as long.
    #[test]
    fn more_slices_keep_the_load_and_the_measured_time() {
        let turns = |w: Window| (w.slices, w.measure / w.slices, w.slice_warmup);
        let ms = Duration::from_millis;
        assert_eq!(turns(window(false, true, None)), (10, ms(500), ms(200)));
        assert_eq!(turns(window(false, true, Some(50))), (50, ms(100), ms(40)));
        assert_eq!(turns(window(true, true, None)), (2, ms(500), ms(100)));
        assert_eq!(turns(window(true, true, Some(4))), (4, ms(250), ms(50)));
        // One server alone is measured in one stretch, whatever is asked.
        assert_eq!(window(false, false, Some(50)).slices, 1);
    }

    #[test]
    fn the_bar_shows_the_control_measured_the_same_way() {
        let mut results = Results::default();
        echo_run(
            &mut results,
            &[
                ("sio-tokio", 7.0, 2000.0, 100.0),
                (CONTROL, 6.0, 1000.0, 80.0),
                ("node", 20.0, 5000.0, 50.0),
                ("socketioxide", 10.0, 2000.0, 90.0),
                ("sio-smol", 7.7, 3000.0, 100.0),
                ("sio-async-std", 7.0, 2000.0, 100.0),
            ],
        );
        let lines = bar(&results);
        let line = |what: &str| lines.iter().find(|l| l.what.starts_with(what)).unwrap();
        let echo = line("server CPU per echo");
        assert_eq!(echo.measured, "0.35 × Node, 0.70 × socketioxide");
        assert_eq!(echo.met, Some(false));
        assert_eq!(echo.control, "0.30 × Node, 0.60 × socketioxide");
        let smol = line("sio-smol");
        assert_eq!(smol.measured, "worst 1.50 × (echo: round trip p99.9 (µs))");
        assert_eq!(smol.met, Some(false));
        // The control was better than tokio on that figure; its worst is 0.8 × the rate.
        assert_eq!(
            smol.control,
            "0.50 × on that figure; worst 1.25 × (echo: messages/s)"
        );
        let memory = &lines[0];
        assert_eq!((memory.measured.as_str(), memory.met), ("n/a KiB", None));
    }
}
