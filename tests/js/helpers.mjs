// Shared helpers of the end-to-end tests: start an example server on a free port, wait for events.
import { spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** Starts `target/debug/<name>` with PORT=0 and resolves once it printed the address it bound. */
export async function startServer(name, env = {}) {
  const bin = path.join(process.env.SIO_TARGET_DIR ?? path.join(root, "target/debug"), name);
  const child = spawn(bin, [], {
    env: { ...process.env, PORT: "0", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let output = "";
  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start: ${output}`)), 20000);
    child.on("exit", (code) => reject(new Error(`${name} exited with ${code}: ${output}`)));
    child.stdout.on("data", (chunk) => {
      output += chunk;
      const match = /listening on ([\d.]+:\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  const lines = [];
  const waiters = [];
  let pending = "";
  child.stdout.on("data", (chunk) => {
    pending += chunk;
    let newline;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      lines.push(line);
      for (const waiter of [...waiters]) waiter();
    }
  });
  return {
    url: `http://${address}`,
    /** Resolves with the first line printed by the server that matches `pattern`. */
    waitForLine(pattern, ms = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const line = lines.find((l) => pattern.test(l));
          if (line !== undefined) {
            waiters.splice(waiters.indexOf(check), 1);
            clearTimeout(timer);
            resolve(line);
          }
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(check), 1);
          reject(new Error(`no line matching ${pattern}: ${lines.join("\n")}`));
        }, ms);
        waiters.push(check);
        check();
      });
    },
    wsUrl: `ws://${address}`,
    process: child,
    async stop() {
      // A process killed by a signal keeps `exitCode` null: check both.
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, "exit");
        child.kill("SIGKILL");
        await exited;
      }
    },
  };
}

/** Resolves with the arguments of the next `event` of `emitter`, or rejects after `ms`. */
export function next(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`timed out waiting for "${event}"`));
    }, ms);
    const listener = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    emitter.once(event, listener);
  });
}

/** Collects `count` events, each as its argument list. */
export function collect(emitter, event, count, ms = 5000) {
  return new Promise((resolve, reject) => {
    const seen = [];
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`got ${seen.length} of ${count} "${event}" events`));
    }, ms);
    const listener = (...args) => {
      seen.push(args);
      if (seen.length === count) {
        clearTimeout(timer);
        emitter.off(event, listener);
        resolve(seen);
      }
    };
    emitter.on(event, listener);
  });
}
