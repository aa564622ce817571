// examples/engine-echo driven by the official engine.io-client, and by raw HTTP and WebSocket where
// the test needs exact bytes.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Socket } from "engine.io-client";
import WebSocket from "ws";
import { collect, next, startServer } from "./helpers.mjs";

let server;

before(async () => {
  server = await startServer("engine-echo");
});

after(async () => {
  await server.stop();
});

function connect(opts = {}) {
  return new Socket(server.url, { path: "/engine.io/", ...opts });
}

async function echo(socket) {
  const messages = collect(socket, "message", 3);
  socket.send("hello");
  socket.send(Buffer.from([1, 2, 3, 4]));
  socket.send("wörld ✓");
  const received = (await messages).map(([data]) => data);
  assert.equal(received[0], "hello");
  assert.deepEqual([...new Uint8Array(received[1])], [1, 2, 3, 4]);
  assert.equal(received[2], "wörld ✓");
}

async function handshake() {
  const res = await fetch(`${server.url}/engine.io/?EIO=4&transport=polling`);
  assert.equal(res.status, 200);
  const body = await res.text();
  return JSON.parse(body.slice(1)).sid;
}

const poll = (sid, init) =>
  fetch(`${server.url}/engine.io/?EIO=4&transport=polling&sid=${sid}`, init);

describe("engine.io-client", () => {
  it("polling only: handshake, text and binary echo", async () => {
    const socket = connect({ transports: ["polling"] });
    await next(socket, "open");
    assert.equal(socket.transport.name, "polling");
    assert.equal(socket.id.length, 20);
    await echo(socket);
    assert.equal(socket.transport.name, "polling");
    socket.close();
  });

  it("websocket only: handshake, text and binary echo", async () => {
    const socket = connect({ transports: ["websocket"] });
    await next(socket, "open");
    assert.equal(socket.transport.name, "websocket");
    await echo(socket);
    socket.close();
  });

  it("upgrades from polling to websocket and keeps the order of messages", async () => {
    const socket = connect();
    await next(socket, "open");
    assert.equal(socket.transport.name, "polling");
    const upgraded = next(socket, "upgrade");
    const messages = collect(socket, "message", 20);
    for (let i = 0; i < 20; i++) socket.send(`m${i}`);
    const [transport] = await upgraded;
    assert.equal(transport.name, "websocket");
    assert.deepEqual(
      (await messages).map(([m]) => m),
      Array.from({ length: 20 }, (_, i) => `m${i}`),
    );
    await echo(socket);
    assert.equal(socket.transport.name, "websocket");
    socket.close();
  });

  it("the server closes a session whose client stops answering pings", async () => {
    for (const transports of [["polling"], ["websocket"]]) {
      const socket = connect({ transports });
      await next(socket, "open");
      const sid = socket.id;
      // Drop the client's pongs: the server must give up after pingInterval + pingTimeout.
      const send = socket._sendPacket.bind(socket);
      socket._sendPacket = (type, ...rest) => (type === "pong" ? undefined : send(type, ...rest));
      const started = Date.now();
      const [reason] = await next(socket, "close", 3000);
      const elapsed = Date.now() - started;
      assert.equal(reason, "transport close", transports[0]);
      assert.ok(elapsed >= 450, `closed after ${elapsed} ms`);
      const res = await poll(sid);
      assert.equal(res.status, 400);
      assert.deepEqual(await res.json(), { code: 1, message: "Session ID unknown" });
    }
  });

  it("the client detects a silent server with ping timeout", async () => {
    const socket = connect({ transports: ["websocket"] });
    await next(socket, "open");
    server.process.kill("SIGSTOP");
    try {
      const [reason] = await next(socket, "close", 3000);
      assert.equal(reason, "ping timeout");
    } finally {
      server.process.kill("SIGCONT");
    }
  });
});

describe("raw protocol", () => {
  it("refuses bad handshakes with the reference status and body", async () => {
    const cases = [
      ["GET", "?EIO=4", 400, { code: 0, message: "Transport unknown" }],
      ["GET", "?EIO=4&transport=abc", 400, { code: 0, message: "Transport unknown" }],
      ["GET", "?transport=polling", 400, { code: 5, message: "Unsupported protocol version" }],
      ["GET", "?EIO=abc&transport=polling", 400, { code: 5, message: "Unsupported protocol version" }],
      ["POST", "?EIO=4&transport=polling", 400, { code: 2, message: "Bad handshake method" }],
      ["PUT", "?EIO=4&transport=polling", 400, { code: 2, message: "Bad handshake method" }],
      ["GET", "?EIO=4&transport=websocket", 400, { code: 3, message: "Bad request" }],
      ["GET", "?EIO=4&transport=polling&sid=nope", 400, { code: 1, message: "Session ID unknown" }],
    ];
    for (const [method, query, status, body] of cases) {
      const res = await fetch(`${server.url}/engine.io/${query}`, { method });
      assert.equal(res.status, status, `${method} ${query}`);
      assert.equal(res.headers.get("content-type"), "application/json");
      assert.deepEqual(await res.json(), body, `${method} ${query}`);
    }
  });

  it("answers 413 to a polling body over maxPayload and keeps the session", async () => {
    const sid = await handshake();
    const res = await poll(sid, { method: "POST", body: "4" + "a".repeat(1_000_000) });
    assert.equal(res.status, 413);
    const ok = await poll(sid, { method: "POST", body: "4small" });
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), "ok");
    const echoed = await poll(sid);
    assert.equal(await echoed.text(), "4small");
  });

  it("an overlapping poll gets 400, the first gets close, then the session is gone", async () => {
    const sid = await handshake();
    const first = poll(sid);
    await new Promise((r) => setTimeout(r, 50));
    const second = await poll(sid);
    assert.equal(second.status, 400);
    assert.equal(await (await first).text(), "1");
    assert.equal((await poll(sid)).status, 400);
  });

  it("a cancelled poll closes the session", async () => {
    const sid = await handshake();
    const controller = new AbortController();
    const pending = poll(sid, { signal: controller.signal }).catch(() => "aborted");
    await new Promise((r) => setTimeout(r, 50));
    controller.abort();
    assert.equal(await pending, "aborted");
    await new Promise((r) => setTimeout(r, 100));
    const res = await poll(sid);
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { code: 1, message: "Session ID unknown" });
  });

  it("a close packet releases the pending poll with noop", async () => {
    const sid = await handshake();
    const pending = poll(sid);
    await new Promise((r) => setTimeout(r, 50));
    const res = await poll(sid, { method: "POST", body: "1" });
    assert.equal(await res.text(), "ok");
    assert.equal(await (await pending).text(), "6");
    assert.equal((await poll(sid)).status, 400);
  });

  it("heartbeat over polling: ping, pong, then ping timeout", async () => {
    const sid = await handshake();
    const ping = await poll(sid);
    assert.equal(await ping.text(), "2");
    await poll(sid, { method: "POST", body: "3" });
    assert.equal(await (await poll(sid)).text(), "2");
    // No pong this time: the next poll is answered with close.
    assert.equal(await (await poll(sid)).text(), "1");
  });

  it("upgrade: probe, noop on the pending poll, 5, then echo on the websocket", async () => {
    const sid = await handshake();
    const pending = poll(sid);
    const ws = new WebSocket(`${server.wsUrl}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
    await next(ws, "open");
    ws.send("2probe");
    const [probe] = await next(ws, "message");
    assert.equal(probe.toString(), "3probe");
    assert.equal(await (await pending).text(), "6");
    ws.send("5");
    ws.send("4upgraded");
    const [echoed] = await next(ws, "message");
    assert.equal(echoed.toString(), "4upgraded");
    // Polling after the upgrade is refused.
    const res = await poll(sid);
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { code: 3, message: "Bad request" });
    // A second websocket for the same session is closed.
    const second = new WebSocket(`${server.wsUrl}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
    await next(second, "close");
    ws.close();
  });

  it("an invalid packet on a websocket closes it", async () => {
    const ws = new WebSocket(`${server.wsUrl}/engine.io/?EIO=4&transport=websocket`);
    const [open] = await next(ws, "message");
    assert.match(open.toString(), /^0\{"sid":"[\w-]{20}","upgrades":\[\],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000\}$/);
    ws.send("abc");
    await next(ws, "close");
  });

  it("a websocket message over maxPayload closes the session", async () => {
    const ws = new WebSocket(`${server.wsUrl}/engine.io/?EIO=4&transport=websocket`);
    await next(ws, "message");
    ws.send("4" + "a".repeat(1_000_001));
    const [code] = await next(ws, "close");
    assert.equal(code, 1009);
  });

  it("websocket frames: a ping gets its pong, fragments are joined, a close is answered in kind", async () => {
    const ws = new WebSocket(`${server.wsUrl}/engine.io/?EIO=4&transport=websocket`);
    await next(ws, "message");
    ws.ping("probe-1");
    const [pong] = await next(ws, "pong");
    assert.equal(pong.toString(), "probe-1");
    ws.send("4hel", { fin: false });
    ws.send("lo wörld", { fin: true });
    const [echoed, binary] = await next(ws, "message");
    assert.equal(binary, false);
    assert.equal(echoed.toString(), "4hello wörld");
    ws.close(4000, "bye");
    const [code, reason] = await next(ws, "close");
    assert.equal(code, 4000);
    assert.equal(reason.toString(), "bye");
  });

  it("a text message that is not UTF-8 closes the websocket with 1007", async () => {
    const ws = new WebSocket(`${server.wsUrl}/engine.io/?EIO=4&transport=websocket`);
    await next(ws, "message");
    ws.send(Buffer.from([0x34, 0xff]), { binary: false });
    const [code] = await next(ws, "close");
    assert.equal(code, 1007);
  });
});
