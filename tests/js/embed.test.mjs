// sio mounted in other servers: an axum Router (tower Layer) and a hand-written hyper server on
// smol (the http::Request -> http::Response entry point).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { io as connect } from "socket.io-client";
import { next, startServer } from "./helpers.mjs";

for (const [name, bin, page] of [
  ["axum", "axum-example", "an axum route beside Socket.IO"],
  ["smol", "smol-embed", "served by my own smol server"],
]) {
  describe(`sio inside ${name}`, () => {
    let server;
    before(async () => {
      server = await startServer(bin);
    });
    after(async () => {
      await server.stop();
    });

    it("the host's own routes keep working", async () => {
      const res = await fetch(`${server.url}/`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), page);
    });

    for (const transports of [["polling"], ["websocket"], ["polling", "websocket"]]) {
      it(`socket.io-client over ${transports.join("+")} connects and gets acks`, async () => {
        const socket = connect(server.url, { transports, reconnection: false, forceNew: true });
        await next(socket, "connect");
        // The upgrade may be done already.
        if (transports.length === 2 && socket.io.engine.transport.name !== "websocket") {
          await next(socket.io.engine, "upgrade");
        }
        assert.equal(socket.io.engine.transport.name, transports.at(-1));
        const reply = await socket.timeout(2000).emitWithAck("echo", { n: 1 }, Buffer.from([7]));
        assert.deepEqual(reply, { n: 1 });
        socket.disconnect();
      });
    }

    it("refusals keep the reference's status and body", async () => {
      const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=nope`);
      assert.equal(res.status, 400);
      assert.deepEqual(await res.json(), { code: 0, message: "Transport unknown" });
    });
  });
}

describe("axum route reading the server", () => {
  it("/api/clients counts the Engine.IO connections", async () => {
    const server = await startServer("axum-example");
    try {
      const socket = connect(server.url, { transports: ["websocket"], reconnection: false, forceNew: true });
      await next(socket, "connect");
      assert.equal(await (await fetch(`${server.url}/api/clients`)).text(), "1");
      socket.disconnect();
    } finally {
      await server.stop();
    }
  });
});
