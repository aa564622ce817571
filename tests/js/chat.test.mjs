// examples/chat in a real browser: Debian's Chromium driven by playwright-core.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer } from "./helpers.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

let browser;
let dir;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "sio-chat-"));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** A page of the chat in a fresh browser context (its own storage). */
async function open(server, query) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${server.url}/?${query}`);
  await page.waitForFunction(() => document.getElementById("status").dataset.state === "connected");
  return page;
}

async function send(page, text, room = "general") {
  await page.selectOption("#room", room);
  await page.fill("#input", text);
  await page.press("#input", "Enter");
}

/** Waits until `text` is shown, then returns how many times it is. */
async function shown(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li")].some((li) => li.textContent.includes(t)),
    text,
  );
  return page.evaluate(
    (t) => [...document.querySelectorAll("#messages li")].filter((li) => li.textContent.includes(t)).length,
    text,
  );
}

/** Waits until every message the page sent was acked by the server. */
async function settled(page) {
  await page.waitForFunction(() => socket.sendBuffer.length === 0 && socket._queue.length === 0);
}

describe("examples/chat in Chromium", () => {
  it("two pages chat in rooms and each sees the other's messages once", async () => {
    const server = await startServer("chat", { CHAT_DB: path.join(dir, "rooms.sqlite") });
    try {
      const alice = await open(server, "nick=alice");
      const bob = await open(server, "nick=bob");
      assert.match(await shown(alice, "bob joined general").then(() => "ok"), /ok/);
      await send(alice, "hello from alice");
      await send(bob, "hello from bob");
      for (const page of [alice, bob]) {
        assert.equal(await shown(page, "alice: hello from alice"), 1);
        assert.equal(await shown(page, "bob: hello from bob"), 1);
      }
      for (const page of [alice, bob]) {
        await page.fill("#room-name", "dev");
        await page.click("#join");
        await page.waitForFunction(() => [...document.querySelectorAll("#room option")].some((o) => o.value === "dev"));
      }
      await send(alice, "in dev", "dev");
      assert.equal(await shown(bob, "#devalice: in dev"), 1);
      // A private message to bob's id.
      const bobId = await bob.textContent("#my-id");
      await alice.fill("#to", bobId);
      await send(alice, "psst");
      assert.equal(await shown(bob, `alice → ${bobId}: psst`), 1);
      await alice.fill("#to", "");
      // Leaving is announced to the room.
      await bob.selectOption("#room", "dev");
      await bob.click("#leave");
      assert.equal(await shown(alice, "bob left dev"), 1);
      await mkdir(path.join(root, "artifacts"), { recursive: true });
      await alice.screenshot({ path: path.join(root, "artifacts", "chat.png") });
    } finally {
      await server.stop();
    }
  });

  it("a page that drops off and comes back in time gets what it missed, recovered, without a reload", async () => {
    const server = await startServer("chat", { CHAT_DB: path.join(dir, "recovery.sqlite") });
    try {
      const alice = await open(server, "nick=alice");
      const bob = await open(server, "nick=bob");
      await send(alice, "before");
      await shown(bob, "alice: before");
      const bobId = await bob.textContent("#my-id");
      // Bob's network goes away (his transport closes without a goodbye).
      await bob.evaluate(() => {
        socket.io.reconnection(false);
        socket.io.engine.close();
      });
      await bob.waitForFunction(() => document.getElementById("status").dataset.state === "disconnected");
      await send(alice, "while you were away");
      await settled(alice);
      await bob.evaluate(() => {
        socket.io.reconnection(true);
        socket.connect();
      });
      await bob.waitForFunction(() => document.getElementById("status").dataset.state === "recovered");
      assert.equal(await shown(bob, "alice: while you were away"), 1);
      assert.equal(await shown(bob, "alice: before"), 1);
      assert.equal(await bob.evaluate(() => socket.id), bobId, "the same socket id");
    } finally {
      await server.stop();
    }
  });

  it("after a server restart a reloaded page shows the whole history from SQLite", async () => {
    const db = path.join(dir, "restart.sqlite");
    let server = await startServer("chat", { CHAT_DB: db });
    const port = new URL(server.url).port;
    const alice = await open(server, "nick=alice");
    for (const text of ["one", "two", "three"]) await send(alice, text);
    await settled(alice);
    await server.stop();
    server = await startServer("chat", { CHAT_DB: db, PORT: port });
    try {
      await alice.reload();
      await alice.waitForFunction(() => document.getElementById("status").dataset.state === "connected");
      for (const text of ["one", "two", "three"]) {
        assert.equal(await shown(alice, `alice: ${text}`), 1);
      }
    } finally {
      await server.stop();
    }
  });

  it("a client whose first acks are lost retries, and the message is stored and shown once", async () => {
    const db = path.join(dir, "retries.sqlite");
    const server = await startServer("chat", { CHAT_DB: db, CHAT_DROP_ACKS: "2" });
    try {
      const alice = await open(server, "nick=alice&ackTimeout=300");
      await send(alice, "exactly once");
      await settled(alice);
      assert.equal(await shown(alice, "alice: exactly once"), 1);
      // The retries reached the server (the queue only empties on an ack), and the database has
      // the message once: a fresh page gets the history once.
      const fresh = await open(server, "nick=carol");
      assert.equal(await shown(fresh, "alice: exactly once"), 1);
    } finally {
      await server.stop();
    }
  });
});
