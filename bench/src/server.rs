//! A server under test as a child process: started with `PORT=0`, its address read from its first
//! line of output (`listening on <addr>`), killed when dropped.

use std::io::{self, BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::load::Target;

/// A running server process.
pub struct ServerProcess {
    child: Child,
    /// Where it listens and its pid (the command must exec the server, as `taskset` does).
    pub target: Target,
}

impl ServerProcess {
    /// Starts `command` and waits up to 30 s for it to say where it listens.
    pub fn spawn(mut command: Command) -> io::Result<ServerProcess> {
        let child = command
            .env("PORT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        // Owned from here on, so that every error path below kills it.
        let mut process = ServerProcess {
            target: Target {
                addr: ([127, 0, 0, 1], 0).into(),
                pid: child.id(),
            },
            child,
        };
        let stdout = process.child.stdout.take().expect("piped stdout");
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = line_tx.send(lines.next());
            // Keep reading so that the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match line_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(Ok(line))) => line,
            _ => {
                return Err(io::Error::other(format!(
                    "{command:?} did not say where it listens"
                )));
            }
        };
        process.target.addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| io::Error::other(format!("{command:?} printed {line:?}")))?;
        Ok(process)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
