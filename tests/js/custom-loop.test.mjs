// examples/custom-loop (sio-core in a hand-written loop, no async runtime) serving socket.io-client.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { io as connect } from "socket.io-client";
import { next, startServer } from "./helpers.mjs";

let server;

before(async () => {
  server = await startServer("custom-loop");
});

after(async () => {
  await server.stop();
});

describe("socket.io-client with examples/custom-loop", () => {
  for (const [name, opts, transport] of [
    ["polling only", { transports: ["polling"] }, "polling"],
    ["websocket only", { transports: ["websocket"] }, "websocket"],
    ["upgrade", {}, "websocket"],
  ]) {
    it(`${name}: auth, events with binary, acks`, async () => {
      const socket = connect(server.url, { ...opts, reconnection: false, forceNew: true, auth: { k: "v" } });
      assert.deepEqual(await next(socket, "auth"), [{ k: "v" }]);
      if (socket.io.engine.transport.name !== transport) await next(socket.io.engine, "upgrade");
      socket.emit("message", 1, { two: [2] }, Buffer.from([3]));
      const back = await next(socket, "message-back");
      assert.deepEqual(back.slice(0, 2), [1, { two: [2] }]);
      assert.deepEqual([...back[2]], [3]);
      assert.equal(await socket.timeout(2000).emitWithAck("message-with-ack", "ok"), "ok");
      socket.disconnect();
    });
  }

  it("custom namespace and the heartbeat keep a connection alive", async () => {
    const socket = connect(server.url + "/custom", { reconnection: false, forceNew: true, transports: ["websocket"] });
    await next(socket, "auth");
    // Three ping intervals (300 ms each): the client answers pings, the server keeps it.
    const pings = [];
    socket.io.engine.on("ping", () => pings.push(Date.now()));
    await new Promise((resolve) => {
      socket.io.engine.on("ping", () => pings.length === 3 && resolve());
    });
    assert.equal(socket.connected, true);
    socket.disconnect();
  });
});
