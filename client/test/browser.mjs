// The browser tests of router-client.js: headless Chromium (Debian's `chromium`) driven by
// playwright-core against a running router. On each transport, forced: open, publish through
// /events, receive 200 datagrams across two forced drops (the router replacing the attachment,
// and a proxy cutting every connection), each exactly once and in order. Then the fallbacks
// (a refused WebSocket upgrade, a proxy that buffers the SSE stream) and the demo page.
//
// Usage: node client/test/browser.mjs <router base URL> [--screenshot FILE]
// Every page goes through a loopback proxy of its own (below), which can cut connections,
// refuse WebSocket upgrades and hold back event-stream bodies. Exits 1 on any failure.

import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import fs from "node:fs";
import { chromium } from "playwright-core";

const DATAGRAMS = 200;
const DROPS_AT = [70, 140];
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

const routerBase = process.argv[2];
if (!routerBase) {
  console.error("usage: node client/test/browser.mjs <router base URL> [--screenshot FILE]");
  process.exit(2);
}
const screenshotFlag = process.argv.indexOf("--screenshot");
// Without --screenshot the picture goes to a temporary folder, removed at the end.
const scratch = screenshotFlag > 0 ? null : fs.mkdtempSync(path.join(os.tmpdir(), "router-client-"));
const screenshotPath = scratch ? path.join(scratch, "demo.png") : process.argv[screenshotFlag + 1];
const router = new URL(routerBase);

/** A loopback HTTP proxy to the router that can misbehave the way real proxies do. */
function startProxy({ refuseWs = false, bufferSse = false } = {}) {
  const sockets = new Set();
  // Attachments under way: a stream, a parked poll or a WebSocket.
  const attachments = new Set();
  const track = (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  };
  const server = http.createServer((req, res) => {
    if (req.url === "/blank") {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
      res.end("<!DOCTYPE html><title>blank</title>");
      return;
    }
    if (req.url.startsWith("/tunnel?")) {
      attachments.add(res);
      res.on("close", () => attachments.delete(res));
    }
    const up = http.request({
      host: router.hostname,
      port: router.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
      agent: false,
    }, (answer) => {
      const headers = { ...answer.headers };
      delete headers["transfer-encoding"];
      delete headers["connection"];
      res.writeHead(answer.statusCode, headers);
      const stream = String(answer.headers["content-type"] || "").startsWith("text/event-stream");
      if (bufferSse && stream) {
        // A buffering proxy: the head goes through, the body only once it is complete.
        const parts = [];
        answer.on("data", (c) => parts.push(c));
        answer.on("end", () => res.end(Buffer.concat(parts)));
      } else {
        answer.pipe(res);
      }
    });
    up.on("socket", track);
    up.on("error", () => res.destroy());
    res.on("close", () => up.destroy());
    req.pipe(up);
  });
  server.on("connection", track);
  server.on("upgrade", (req, socket, head) => {
    track(socket);
    attachments.add(socket);
    socket.on("close", () => attachments.delete(socket));
    if (refuseWs) {
      socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    const up = net.connect(Number(router.port), router.hostname, () => {
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      }
      up.write(raw + "\r\n");
      if (head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    track(up);
    up.on("error", () => socket.destroy());
    socket.on("error", () => up.destroy());
    up.on("close", () => socket.destroy());
    socket.on("close", () => up.destroy());
  });
  server.requestTimeout = 0;
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({
        base: `http://127.0.0.1:${server.address().port}`,
        /** Cuts every connection through the proxy; returns how many attachments it broke. */
        async cutAll() {
          // A poller is between two polls for a moment: wait (briefly) for an attachment.
          for (let i = 0; i < 200 && attachments.size === 0; i++) {
            await new Promise((r) => setTimeout(r, 5));
          }
          const broken = attachments.size;
          for (const s of sockets) s.destroy();
          return broken;
        },
        close() {
          for (const s of sockets) s.destroy();
          server.close();
        },
      });
    });
  });
}

/** `POST /events` straight to the router, as the tunnel `tunnel`. */
async function publishEvent(tunnel, pathName, data) {
  const res = await fetch(new URL("/events", router), {
    method: "POST",
    body: JSON.stringify({ tunnel, path: pathName, data }),
  });
  const answer = await res.json();
  if (!answer.ok) throw new Error(`publish refused: ${res.status} ${answer.error}`);
}

/** Replaces the tunnel's attachment from the router's side: a second attach takes it over. */
async function kick(tunnel) {
  const u = new URL("/tunnel", router);
  u.searchParams.set("format", "longpoll");
  u.searchParams.set("id", tunnel);
  u.searchParams.set("ttl", "0");
  const res = await fetch(u);
  await res.text();
}

/** Opens a page at `proxy` with a Tunnel in `window.t`, its events recorded in `window.seen`. */
async function openTunnel(browser, proxy, options) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(proxy.base + "/blank");
  await page.evaluate(async ([base, options]) => {
    const { Tunnel } = await import(base + "/client/router-client.js");
    const seen = { datagrams: [], states: [], transports: [], gaps: [], errors: [] };
    window.seen = seen;
    const t = new Tunnel(base, options);
    window.t = t;
    t.on("datagram", (d) => seen.datagrams.push(d));
    t.on("state", (s) => seen.states.push(s));
    t.on("transport", (name) => seen.transports.push(name));
    t.on("gap", (g) => seen.gaps.push(g.reason));
    t.on("error", (e) => seen.errors.push(String(e.message)));
  }, [proxy.base, options]);
  await page.waitForFunction(() => window.t.state === "open", null, { timeout: 15000 });
  return { context, page };
}

async function waitForCount(page, count, timeoutMs) {
  await page.waitForFunction((n) => window.seen.datagrams.length >= n, count, {
    timeout: timeoutMs,
  }).catch(() => {});
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** 200 datagrams exactly once and in order on `transport`, across a kick and a cut. */
async function transportTest(browser, transport) {
  const proxy = await startProxy();
  const started = Date.now();
  const topic = `/browser/${transport}`;
  const { context, page } = await openTunnel(browser, proxy, {
    transports: [transport],
    paths: [topic + "/*"],
    backoffMinMs: 200,
    openTimeoutMs: 5000,
  });
  try {
    check(await page.evaluate(() => window.t.transport) === transport, "wrong transport");
    const tunnel = await page.evaluate(() => window.t.id);
    // The first ten through the library's own publish, the rest from here, both through
    // /events as the same tunnel, so they keep their order.
    await page.evaluate(async (topic) => {
      for (let seq = 0; seq < 10; seq++) await window.t.publish(topic + "/x", { seq });
    }, topic);
    let cut = 0;
    for (let seq = 10; seq < DATAGRAMS; seq++) {
      if (seq === DROPS_AT[0]) kick(tunnel).catch((e) => console.error("kick:", e.message));
      if (seq === DROPS_AT[1]) cut = await proxy.cutAll();
      await publishEvent(tunnel, topic + "/x", { seq });
      await new Promise((r) => setTimeout(r, 5));
    }
    await waitForCount(page, DATAGRAMS, 20000);
    // A little longer, so that a duplicate arriving late is seen.
    await new Promise((r) => setTimeout(r, 300));
    const seen = await page.evaluate(() => window.seen);
    const seqs = seen.datagrams.map((d) => d.data.seq);
    const ids = new Set(seen.datagrams.map((d) => d.id));
    const expected = Array.from({ length: DATAGRAMS }, (_, i) => i);
    check(ids.size === seen.datagrams.length, `${transport}: a datagram id arrived twice`);
    check(JSON.stringify(seqs) === JSON.stringify(expected),
      `${transport}: got ${seqs.length} datagrams, not 0..${DATAGRAMS - 1} in order: ${seqs.join(",")}`);
    check(cut >= 1, `${transport}: the cut found no attachment to break`);
    // A stream's end shows as a reconnect. A poll is one attach each: a replaced poll is
    // answered early, and the browser itself sends again a GET whose connection broke.
    const reconnects = seen.states.filter((s) => s === "reconnecting").length;
    const polls = transport === "longpoll" || transport === "jsonp";
    check(polls || reconnects >= 2,
      `${transport}: ${reconnects} reconnects, the two drops were not seen`);
    check(seen.gaps.length === 0, `${transport}: gap events ${seen.gaps.join(",")}`);
    check(seen.transports.every((t) => t === transport), `${transport}: switched transports`);
    console.log(`ok ${transport}: ${DATAGRAMS} datagrams once and in order across a kick and a ` +
      `cut of ${cut} attachment(s); ${reconnects} reconnects (${Date.now() - started} ms)`);
  } finally {
    await context.close();
    proxy.close();
  }
}

/** With the default preference list behind a misbehaving proxy, ends on `expected`. */
async function fallbackTest(browser, proxyOptions, expected, label) {
  const proxy = await startProxy(proxyOptions);
  const started = Date.now();
  const { context, page } = await openTunnel(browser, proxy, {
    paths: ["/fallback/*"],
    openTimeoutMs: 2000,
  });
  try {
    const seen = await page.evaluate(() => window.seen);
    const transport = await page.evaluate(() => window.t.transport);
    check(transport === expected.at(-1),
      `${label}: open on ${transport}, expected ${expected.at(-1)} (tried ${seen.transports})`);
    check(JSON.stringify(seen.transports) === JSON.stringify(expected),
      `${label}: tried ${seen.transports}, expected ${expected}`);
    const tunnel = await page.evaluate(() => window.t.id);
    await publishEvent(tunnel, "/fallback/a", { text: "after fallback" });
    await waitForCount(page, 1, 10000);
    const datagrams = await page.evaluate(() => window.seen.datagrams);
    check(datagrams.length === 1 && datagrams[0].data.text === "after fallback",
      `${label}: the datagram did not arrive over ${transport}`);
    const remembered = await page.evaluate(
      (base) => sessionStorage.getItem("router-client:transport:" + base), proxy.base);
    check(remembered === transport, `${label}: remembered ${remembered}, not ${transport}`);
    console.log(`ok fallback ${label}: ${expected.join(" -> ")} (${Date.now() - started} ms)`);
  } finally {
    await context.close();
    proxy.close();
  }
}

/** The demo page: force a transport, publish from its form, see the datagram. */
async function demoTest(browser) {
  const proxy = await startProxy();
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  const page = await context.newPage();
  try {
    page.on("pageerror", (e) => console.error("demo page error:", e.message));
    await page.goto(proxy.base + "/");
    await page.waitForSelector("#state:text('open')", { timeout: 15000 });
    for (const name of ["sse", "longpoll", "ws"]) {
      await page.selectOption("#transport", name);
      await page.waitForFunction(
        (n) => document.getElementById("in-use").textContent === n
          && document.getElementById("state").textContent === "open", name, { timeout: 15000 });
    }
    const text = `hello from the test ${Date.now()}`;
    await page.fill("#data", JSON.stringify({ text }));
    await page.click("#publish button");
    await page.waitForFunction((t) => document.getElementById("log").textContent.includes(t),
      text, { timeout: 10000 });
    await page.screenshot({ path: screenshotPath });
    console.log(`ok demo page: forced sse, longpoll, ws; a published datagram shows ` +
      `(screenshot ${screenshotPath})`);
  } finally {
    await context.close();
    proxy.close();
  }
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
}).catch((e) => {
  console.error(`cannot start ${CHROMIUM} (${e.message.split("\n")[0]}): install Debian's ` +
    "`chromium` (apt-get install -y chromium, as .ci/run does) or set CHROMIUM");
  process.exit(1);
});
let failed = false;
try {
  for (const transport of ["ws", "sse", "longpoll", "jsonp"]) {
    await transportTest(browser, transport);
  }
  await fallbackTest(browser, { refuseWs: true }, ["ws", "sse"], "refused WebSocket");
  await fallbackTest(browser, { refuseWs: true, bufferSse: true }, ["ws", "sse", "longpoll"],
    "buffered stream");
  await demoTest(browser);
  console.log("browser tests passed");
} catch (e) {
  failed = true;
  console.error("FAILED:", e.message);
} finally {
  await browser.close();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
