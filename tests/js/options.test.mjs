// Engine options seen by the official clients: path and trailing slash, allow_upgrades,
// transports, initial_packet.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Socket } from "engine.io-client";
import { io as connect } from "socket.io-client";
import { next, startServer } from "./helpers.mjs";

describe("path without trailing slash, no upgrades (examples/options)", () => {
  let server;
  before(async () => {
    server = await startServer("options");
  });
  after(async () => {
    await server.stop();
  });

  it("socket.io-client on /rt connects and stays on polling", async () => {
    const socket = connect(server.url, { path: "/rt", reconnection: false, forceNew: true });
    await next(socket, "connect");
    assert.equal(await socket.timeout(2000).emitWithAck("echo", "x"), "x");
    assert.equal(socket.io.engine.transport.name, "polling");
    socket.disconnect();
  });

  it("the handshake offers no upgrade, and the prefix match takes /rtx too", async () => {
    for (const path of ["/rt/", "/rtx/"]) {
      const res = await fetch(`${server.url}${path}?EIO=4&transport=polling`);
      assert.equal(res.status, 200, path);
      assert.deepEqual(JSON.parse((await res.text()).slice(1)).upgrades, []);
    }
    assert.equal((await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`)).status, 404);
  });

  it("a websocket-only client still connects directly", async () => {
    const socket = connect(server.url, { path: "/rt", transports: ["websocket"], reconnection: false, forceNew: true });
    await next(socket, "connect");
    assert.equal(socket.io.engine.transport.name, "websocket");
    socket.disconnect();
  });
});

describe("engine options (examples/engine-echo)", () => {
  it("initial_packet is the first message after open", async () => {
    const server = await startServer("engine-echo", { INITIAL_PACKET: "welcome" });
    try {
      for (const transports of [["polling"], ["websocket"]]) {
        const socket = new Socket(server.url, { path: "/engine.io/", transports });
        const [data] = await next(socket, "message");
        assert.equal(data, "welcome");
        socket.close();
      }
    } finally {
      await server.stop();
    }
  });

  it("transports: a polling-only server refuses websocket clients and offers no upgrade", async () => {
    const server = await startServer("engine-echo", { TRANSPORTS: "polling" });
    try {
      const ws = new Socket(server.url, { path: "/engine.io/", transports: ["websocket"] });
      const [err] = await next(ws, "error");
      assert.ok(err, "the websocket is refused");
      const res = await fetch(`${server.url}/engine.io/?EIO=4&transport=websocket`);
      assert.deepEqual(await res.json(), { code: 0, message: "Transport unknown" });
      const open = await fetch(`${server.url}/engine.io/?EIO=4&transport=polling`);
      assert.deepEqual(JSON.parse((await open.text()).slice(1)).upgrades, []);
      const polling = new Socket(server.url, { path: "/engine.io/" });
      await next(polling, "open");
      assert.equal(polling.transport.name, "polling");
      polling.close();
    } finally {
      await server.stop();
    }
  });
});
