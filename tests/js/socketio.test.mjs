// examples/conformance and examples/echo driven by the official socket.io-client.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { io as connect, Manager } from "socket.io-client";
import { collect, next, startServer } from "./helpers.mjs";

let conformance;
let echo;

before(async () => {
  conformance = await startServer("conformance");
  echo = await startServer("echo");
});

after(async () => {
  await conformance.stop();
  await echo.stop();
});

const sockets = [];

function client(server, nsp = "/", opts = {}) {
  const socket = connect(server.url + nsp, { reconnection: false, forceNew: true, ...opts });
  sockets.push(socket);
  return socket;
}

function closeAll() {
  for (const s of sockets.splice(0)) s.disconnect();
}

const MODES = [
  ["polling only", { transports: ["polling"] }, "polling"],
  ["websocket only", { transports: ["websocket"] }, "websocket"],
  ["upgrade", {}, "websocket"],
];

describe("socket.io-client with examples/conformance", () => {
  after(closeAll);

  for (const [name, opts, finalTransport] of MODES) {
    it(`${name}: connects with auth, echoes events with several arguments and binary, acks`, async () => {
      const socket = client(conformance, "/", { ...opts, auth: { token: "abc", nested: { n: 1 } } });
      const [auth] = await next(socket, "auth");
      assert.deepEqual(auth, { token: "abc", nested: { n: 1 } });
      assert.equal(socket.connected, true);
      assert.equal(socket.id.length, 20);
      if (finalTransport !== socket.io.engine.transport.name) await next(socket.io.engine, "upgrade");
      assert.equal(socket.io.engine.transport.name, finalTransport);

      const args = [1, "2", { 3: [false], deep: { list: [null, 1.5, "x"] } }, Buffer.from([1, 2, 3])];
      socket.emit("message", ...args);
      const back = await next(socket, "message-back");
      assert.deepEqual(back.slice(0, 3), args.slice(0, 3));
      assert.deepEqual([...back[3]], [1, 2, 3]);

      const acked = await socket.timeout(2000).emitWithAck("message-with-ack", "a", { b: [Buffer.from([9])] });
      assert.equal(acked, "a");
      socket.disconnect();
    });
  }

  it("connects to a custom namespace with auth, and keeps namespaces apart", async () => {
    // One Engine.IO connection carrying both namespaces.
    const manager = new Manager(conformance.url, { transports: ["websocket"], reconnection: false });
    const main = manager.socket("/");
    const custom = manager.socket("/custom", { auth: { room: 7 } });
    const [[mainAuth], [customAuth]] = await Promise.all([next(main, "auth"), next(custom, "auth")]);
    assert.deepEqual(mainAuth, {});
    assert.deepEqual(customAuth, { room: 7 });
    assert.notEqual(main.id, custom.id);
    const mainBacks = [];
    main.on("message-back", (...args) => mainBacks.push(args));
    custom.emit("message", "only here");
    assert.deepEqual(await next(custom, "message-back"), ["only here"]);
    custom.disconnect();
    // The connection stays for the other namespace; on one connection packets keep their order,
    // so a stray answer to the custom namespace would have come first.
    const own = next(main, "message-back");
    main.emit("message", "still here");
    await own;
    assert.deepEqual(mainBacks, [["still here"]]);
    main.disconnect();
  });

  it("an unknown namespace gets connect_error Invalid namespace", async () => {
    const socket = client(conformance, "/nope");
    const [err] = await next(socket, "connect_error");
    assert.equal(err.message, "Invalid namespace");
  });
});

describe("socket.io-client with examples/echo", () => {
  after(closeAll);

  it("acks both ways, and a server ack times out when the client does not answer", async () => {
    const socket = client(echo, "/", { transports: ["websocket"] });
    await next(socket, "connect");
    const echoed = await socket.timeout(2000).emitWithAck("echo", { a: 1 }, Buffer.from([7, 8]));
    assert.deepEqual(echoed, { a: 1 });

    socket.once("question", (q, ack) => {
      assert.equal(q, "ping?");
      ack("pong!", { n: 2 });
    });
    socket.emit("ask", 2000);
    assert.deepEqual(await next(socket, "answer"), [{ answer: ["pong!", { n: 2 }] }]);

    socket.once("question", () => {}); // never answers
    const started = Date.now();
    socket.emit("ask", 200);
    assert.deepEqual(await next(socket, "answer"), [{ error: "operation has timed out" }]);
    assert.ok(Date.now() - started >= 190);
    socket.disconnect();
  });

  it("rooms and broadcasts reach 200 clients: each member once, the excluded none", async () => {
    const N = 200;
    const clients = Array.from({ length: N }, () => client(echo, "/", { transports: ["websocket"] }));
    await Promise.all(clients.map((c) => next(c, "connect", 10000)));
    const received = clients.map(() => ({ room: 0, broadcast: 0, everyone: 0 }));
    clients.forEach((c, i) => {
      c.on("room-message", (m) => {
        assert.equal(m, "to a");
        received[i].room++;
      });
      c.on("broadcast", (m) => {
        assert.equal(m, "to all");
        received[i].broadcast++;
      });
      c.on("everyone", () => received[i].everyone++);
    });
    // Even-numbered clients join room "a".
    await Promise.all(
      clients.map((c, i) => (i % 2 === 0 ? c.timeout(5000).emitWithAck("join", "a") : null)),
    );
    const sender = clients[0];
    sender.emit("to-room", "a", "to a");
    sender.emit("broadcast", "to all");
    // A final message to everyone, sender included: once every client has it, anything sent
    // before it on the same connection has arrived too.
    const done = Promise.all(clients.map((c) => next(c, "everyone", 10000)));
    sender.emit("everyone", "end");
    await done;
    received.forEach((r, i) => {
      const inRoom = i % 2 === 0 && i !== 0;
      assert.deepEqual(r, { room: inRoom ? 1 : 0, broadcast: i === 0 ? 0 : 1, everyone: 1 }, `client ${i}`);
    });
    for (const c of clients) c.disconnect();
  });

  it("async handlers, catch-all listeners and packet middlewares", async () => {
    const socket = client(echo, "/", { transports: ["websocket"] });
    await next(socket, "connect");
    const echoed = await socket.timeout(2000).emitWithAck("async-echo", "x", Buffer.from([1]));
    assert.equal(echoed, "x");
    const seen = [];
    socket.on("should-not-happen", () => seen.push("handler ran"));
    const error = next(socket, "error-seen");
    socket.emit("forbidden");
    assert.deepEqual(await error, ['"forbidden" is not allowed']);
    // async-echo, forbidden and count itself: the catch-all listener sees refused events too.
    assert.equal(await socket.timeout(2000).emitWithAck("count"), 3);
    assert.deepEqual(seen, []);
    socket.disconnect();
  });

  it("a broadcast with an ack collects one answer per socket, or times out with the partial list", async () => {
    const server = await startServer("echo");
    try {
      const [a, b, c] = [0, 1, 2].map(() => client(server, "/", { transports: ["websocket"] }));
      await Promise.all([a, b, c].map((s) => next(s, "connect")));
      a.on("vote", (ack) => ack("yes"));
      b.on("vote", (ack) => ack("no"));
      let cAnswers = false;
      c.on("vote", (ack) => cAnswers && ack("maybe"));
      a.emit("poll-all", 300);
      assert.deepEqual(await next(a, "poll-result"), [{ answers: 2, complete: false }]);
      cAnswers = true;
      a.emit("poll-all", 5000);
      assert.deepEqual(await next(a, "poll-result"), [{ answers: 3, complete: true }]);
    } finally {
      await server.stop();
    }
  });

  it("serves the browser client from the installed socket.io-client package", async () => {
    const { version } = JSON.parse(
      await (await import("node:fs/promises")).readFile("node_modules/socket.io-client/package.json", "utf8"),
    );
    const res = await fetch(`${echo.url}/socket.io/socket.io.min.js`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/javascript; charset=utf-8");
    assert.equal(res.headers.get("etag"), `"${version}"`);
    assert.equal(res.headers.get("cache-control"), "public, max-age=0");
    const body = await res.text();
    const file = await (await import("node:fs/promises")).readFile(
      "node_modules/socket.io-client/dist/socket.io.min.js",
      "utf8",
    );
    assert.equal(body, file);
    const cached = await fetch(`${echo.url}/socket.io/socket.io.min.js`, { headers: { "if-none-match": `"${version}"` } });
    assert.equal(cached.status, 304);
    const map = await fetch(`${echo.url}/socket.io/socket.io.js.map`);
    assert.equal(map.headers.get("content-type"), "application/json; charset=utf-8");
    assert.equal((await fetch(`${echo.url}/socket.io/package.json`)).status, 400);
  });

  it("fetch_sockets and disconnect_sockets act on every socket of a room", async () => {
    const [a, b, c] = [0, 1, 2].map(() => client(echo, "/", { transports: ["websocket"] }));
    await Promise.all([a, b, c].map((s) => next(s, "connect")));
    await a.timeout(2000).emitWithAck("join", "kick-me");
    await b.timeout(2000).emitWithAck("join", "kick-me");
    const ids = await c.timeout(2000).emitWithAck("fetch", "kick-me");
    assert.deepEqual(ids, [a.id, b.id].sort());
    const gone = [next(a, "disconnect"), next(b, "disconnect")];
    c.emit("kick", "kick-me");
    for (const [reason] of await Promise.all(gone)) assert.equal(reason, "io server disconnect");
    assert.deepEqual(await c.timeout(2000).emitWithAck("fetch", "kick-me"), []);
    assert.equal(c.connected, true);
    c.disconnect();
  });

  it("allow_request refuses with 403, CORS and the session cookie are on every handshake", async () => {
    const banned = await fetch(`${echo.url}/socket.io/?EIO=4&transport=polling&banned=1`);
    assert.equal(banned.status, 403);
    assert.deepEqual(await banned.json(), { code: 4, message: "banned" });
    await echo.waitForLine(/^connection error: 4 banned$/);

    const preflight = await fetch(`${echo.url}/socket.io/?EIO=4&transport=polling`, {
      method: "OPTIONS",
      headers: { origin: "http://allowed.example", "access-control-request-method": "POST" },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), "http://allowed.example");
    assert.equal(preflight.headers.get("access-control-allow-credentials"), "true");
    assert.equal(preflight.headers.get("access-control-allow-methods"), "GET,HEAD,PUT,PATCH,POST,DELETE");

    const open = await fetch(`${echo.url}/socket.io/?EIO=4&transport=polling`, {
      headers: { origin: "http://allowed.example" },
    });
    const sid = JSON.parse((await open.text()).slice(1)).sid;
    assert.equal(open.headers.get("access-control-allow-origin"), "http://allowed.example");
    assert.equal(open.headers.get("set-cookie"), `io=${sid}; Path=/; HttpOnly; SameSite=Lax`);
    assert.match(sid, /^echo-[0-9a-f]{16}$/, "generate_id");
    assert.equal(open.headers.get("x-sio-initial"), "1", "initial_headers");
    const later = await fetch(`${echo.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: "POST", body: "3" });
    assert.equal(await later.text(), "ok");
    assert.equal(later.headers.get("x-sio-initial"), null);
    const other = await fetch(`${echo.url}/socket.io/?EIO=4&transport=polling`, {
      headers: { origin: "http://other.example" },
    });
    assert.equal(other.headers.get("access-control-allow-origin"), null);
    assert.equal(other.headers.get("vary"), "Origin");

    // A real client is let in (the decision is async) and a banned one gets connect_error.
    const ok = client(echo, "/", { transports: ["websocket"] });
    await next(ok, "connect");
    ok.disconnect();
    const refused = client(echo, "/", { transports: ["polling"], query: { banned: "1" } });
    const [err] = await next(refused, "connect_error");
    assert.equal(err.message, "xhr poll error");
    assert.equal(err.description, 403);
  });

  it("dynamic namespaces are created on demand and the parent broadcasts to every child", async () => {
    const a = client(echo, "/team-a", { transports: ["websocket"] });
    const b = client(echo, "/team-b", { transports: ["websocket"] });
    await Promise.all([next(a, "connect"), next(b, "connect")]);
    const news = [next(a, "news"), next(b, "news")];
    a.emit("all-teams", "hello teams");
    assert.deepEqual(await Promise.all(news), [["hello teams"], ["hello teams"]]);
    const other = client(echo, "/other");
    const [err] = await next(other, "connect_error");
    assert.equal(err.message, "Invalid namespace");
    a.disconnect();
    b.disconnect();
  });

  it("a graceful shutdown closes every client and the process exits with status 0", async () => {
    const server = await startServer("echo");
    const ws = client(server, "/", { transports: ["websocket"] });
    const polling = client(server, "/", { transports: ["polling"] });
    await Promise.all([next(ws, "connect"), next(polling, "connect")]);
    const ids = [ws.id, polling.id];
    const closed = [next(ws, "disconnect"), next(polling, "disconnect")];
    const exited = new Promise((resolve) => server.process.once("exit", (code) => resolve(code)));
    server.process.kill("SIGTERM");
    const [[wsReason], [pollingReason]] = await Promise.all(closed);
    assert.equal(wsReason, "transport close");
    // A parked poll is answered with `close` (transport close); a poll still on its way when the
    // session closed gets 400 instead (transport error), as with the reference.
    assert.ok(["transport close", "transport error"].includes(pollingReason), pollingReason);
    assert.equal(await exited, 0);
    for (const id of ids) {
      await server.waitForLine(new RegExp(`^${id} disconnected: server shutting down$`));
    }
    await server.waitForLine(/^shut down$/);
  });

  it("a middleware refusal reaches the client with message and data", async () => {
    const refused = client(echo, "/secure", { auth: { token: "wrong" } });
    const [err] = await next(refused, "connect_error");
    assert.equal(err.message, "not authorized");
    assert.deepEqual(err.data, { reason: "a token is required" });
    assert.equal(refused.connected, false);

    const allowed = client(echo, "/secure", { auth: { token: "secret" } });
    const [id] = await next(allowed, "welcome");
    assert.equal(id, allowed.id);
    allowed.disconnect();
  });

  it("disconnect reasons: io server disconnect, io client disconnect, and the server's view", async () => {
    const a = client(echo, "/", { transports: ["websocket"] });
    await next(a, "connect");
    const aid = a.id;
    a.emit("disconnect-me", false);
    assert.deepEqual(await next(a, "disconnect"), ["io server disconnect", undefined]);
    await echo.waitForLine(new RegExp(`^${aid} disconnected: server namespace disconnect$`));

    const b = client(echo, "/", { transports: ["polling"] });
    await next(b, "connect");
    const id = b.id;
    const bClosed = next(b, "disconnect");
    b.disconnect();
    assert.equal((await bClosed)[0], "io client disconnect");
    await echo.waitForLine(new RegExp(`^${id} disconnected: client namespace disconnect$`));

    const c = client(echo, "/", { transports: ["websocket"] });
    await next(c, "connect");
    const cid = c.id;
    c.emit("disconnect-me", true);
    const [reason] = await next(c, "disconnect");
    assert.equal(reason, "io server disconnect");
    await echo.waitForLine(new RegExp(`^${cid} disconnected: server namespace disconnect$`));

    const d = client(echo, "/", { transports: ["websocket"] });
    await next(d, "connect");
    const did = d.id;
    // Closing the engine emits `disconnect` synchronously: listen first.
    const closed = next(d, "disconnect");
    d.io.engine.close();
    assert.equal((await closed)[0], "forced close");
    await echo.waitForLine(new RegExp(`^${did} disconnected: transport close$`));
  });

  it("the client sees ping timeout and transport close", async () => {
    const server = await startServer("echo");
    try {
      const a = client(server, "/", { transports: ["websocket"] });
      await next(a, "connect");
      // The connection drops without a close frame.
      server.process.kill("SIGKILL");
      const [reason] = await next(a, "disconnect");
      assert.equal(reason, "transport close");
    } finally {
      await server.stop();
    }
    // The conformance server pings every 300 ms with a 200 ms timeout: a stopped server is seen
    // by the client's own heartbeat timer.
    const b = client(conformance, "/", { transports: ["websocket"] });
    await next(b, "connect");
    conformance.process.kill("SIGSTOP");
    try {
      const [reason] = await next(b, "disconnect", 3000);
      assert.equal(reason, "ping timeout");
    } finally {
      conformance.process.kill("SIGCONT");
    }
  });
});
