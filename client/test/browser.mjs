// The browser tests of router-client.js: headless Chromium (Debian's `chromium`) driven by
// playwright-core against a running router. On each transport, forced: open, publish through
// /events, receive 200 datagrams across two forced drops (the router replacing the attachment,
// and a proxy cutting every connection), each exactly once and in order. Then the fallbacks
// (a refused WebSocket upgrade, a proxy that buffers the SSE stream) and the return to the
// WebSocket once it works, the waits a draining or
// busy router asks for, no re-attach while the page is hidden, and the demo page.
//
// Usage: node client/test/browser.mjs <router base URL> [--grace-ms MS] [--screenshot FILE]
//          [--auth-router URL --secret-file FILE]
// (--auth-router: a second router with auth.mode = "jwt", leeway_s = 0 and the HS256 secret in
// --secret-file, for the tests of tokens and their expiry; without it they do not run)
// (--grace-ms: the router's tunnel_grace_ms, for the test of a tunnel lost while hidden; 30000
// by default, as the router's)
// Every page goes through a loopback proxy of its own (below), which can cut connections,
// refuse WebSocket upgrades and hold back event-stream bodies. Exits 1 on any failure.

import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import fs from "node:fs";
import crypto from "node:crypto";
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
const graceFlag = process.argv.indexOf("--grace-ms");
const GRACE_MS = graceFlag > 0 ? Number(process.argv[graceFlag + 1]) : 30000;
const flag = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : null;
};
const authRouter = flag("--auth-router") ? new URL(flag("--auth-router")) : null;
const secret = flag("--secret-file") ? fs.readFileSync(flag("--secret-file"), "utf8").trim() : null;

/** A loopback HTTP proxy to the router that can misbehave the way real proxies do. */
function startProxy(options = {}, target = router) {
  // Mutable: a test may stop refusing upgrades halfway.
  const mode = { refuseWs: false, bufferSse: false, busyFirst: 0, ...options };
  const sockets = new Set();
  // Attachments under way: a stream, a parked poll or a WebSocket.
  const attachments = new Set();
  // The client sides of WebSockets and of event streams, for a drain's goodbyes.
  const websockets = new Set();
  const streams = new Set();
  // Tokens that came with attaches (header or query).
  const counts = { attaches: 0, tokens: new Set() };
  const noteToken = (req) => {
    const token = (req.headers.authorization || "").replace(/^Bearer /, "")
      || new URL(req.url, "http://x").searchParams.get("token");
    if (token) counts.tokens.add(token);
  };
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
      counts.attaches += 1;
      noteToken(req);
      if (counts.attaches <= mode.busyFirst) {
        // What the router answers when new tunnels come faster than tunnels_new_per_s.
        res.writeHead(503, { "Content-Type": "application/json", "Retry-After": "1" });
        res.end('{"ok":false,"error":"too many new tunnels right now; retry later"}');
        return;
      }
      attachments.add(res);
      res.on("close", () => attachments.delete(res));
    }
    const up = http.request({
      host: target.hostname,
      port: target.port,
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
      if (mode.bufferSse && stream) {
        // A buffering proxy: the head goes through, the body only once it is complete.
        const parts = [];
        answer.on("data", (c) => parts.push(c));
        answer.on("end", () => res.end(Buffer.concat(parts)));
      } else {
        if (stream) {
          const entry = { res, answer };
          streams.add(entry);
          res.on("close", () => streams.delete(entry));
        }
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
    counts.attaches += 1;
    noteToken(req);
    attachments.add(socket);
    socket.on("close", () => attachments.delete(socket));
    if (mode.refuseWs) {
      socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    const up = net.connect(Number(target.port), target.hostname, () => {
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      }
      up.write(raw + "\r\n");
      if (head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
      websockets.add(socket);
      socket.on("close", () => websockets.delete(socket));
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
        counts,
        mode,
        /** What a draining router says: close 1012 to WebSockets, `retry:` to event streams. */
        drain(retryMs) {
          for (const s of websockets) {
            s.end(Buffer.from([0x88, 0x02, 0x03, 0xf4]));
          }
          for (const { res, answer } of streams) {
            answer.unpipe(res);
            answer.destroy();
            res.end(`retry: ${retryMs}\n\n`);
          }
          return websockets.size + streams.size;
        },
        close() {
          for (const s of sockets) s.destroy();
          server.close();
        },
      });
    });
  });
}

/** `POST /events` straight to the router (`to`), as the tunnel `tunnel`. */
async function publishEvent(tunnel, pathName, data, to = router, token = null) {
  const res = await fetch(new URL("/events", to), {
    method: "POST",
    headers: token ? { Authorization: "Bearer " + token } : {},
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
    const seen = {
      datagrams: [], states: [], stateTimes: [], transports: [], gaps: [], errors: [],
      created: performance.now(),
    };
    window.seen = seen;
    const t = new Tunnel(base, options);
    window.t = t;
    t.on("datagram", (d) => seen.datagrams.push(d));
    t.on("state", (s) => {
      seen.states.push(s);
      seen.stateTimes.push([s, performance.now()]);
    });
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Milliseconds from the last `reconnecting` to the `open` after it. */
function reconnectDelayMs(seen) {
  const times = seen.stateTimes;
  const at = times.findLastIndex(([s]) => s === "reconnecting");
  const open = times.slice(at).find(([s]) => s === "open");
  return at >= 0 && open ? open[1] - times[at][1] : NaN;
}

/** A draining router's goodbye (close 1012, SSE `retry:`) spaces the re-attach as asked. */
async function drainTest(browser, transport) {
  const proxy = await startProxy();
  const topic = `/drain/${transport}`;
  const retryMs = 1500;
  const { context, page } = await openTunnel(browser, proxy, {
    transports: [transport],
    paths: [topic + "/*"],
    backoffMinMs: 200,
  });
  try {
    const tunnel = await page.evaluate(() => window.t.id);
    await publishEvent(tunnel, topic + "/x", { seq: 0 });
    await waitForCount(page, 1, 5000);
    check(proxy.drain(retryMs) === 1, `${transport} drain: no connection to drain`);
    for (let seq = 1; seq < 5; seq++) await publishEvent(tunnel, topic + "/x", { seq });
    await waitForCount(page, 5, 10000);
    await page.waitForFunction(() => window.t.state === "open", null, { timeout: 10000 });
    const seen = await page.evaluate(() => window.seen);
    const seqs = seen.datagrams.map((d) => d.data.seq).join(",");
    check(seqs === "0,1,2,3,4", `${transport} drain: got ${seqs}`);
    check(seen.gaps.length === 0, `${transport} drain: gaps ${seen.gaps}`);
    const delayMs = reconnectDelayMs(seen);
    // SSE waits what `retry:` said; a WebSocket closed 1012 waits 0.5 to 5 s.
    const [low, high] = transport === "sse" ? [retryMs - 50, retryMs + 1000] : [450, 6000];
    check(delayMs >= low && delayMs <= high,
      `${transport} drain: re-attached after ${Math.round(delayMs)} ms, not within ${low}-${high}`);
    console.log(`ok drain ${transport}: re-attached after ${Math.round(delayMs)} ms, nothing lost`);
  } finally {
    await context.close();
    proxy.close();
  }
}

/** A 503 with Retry-After is waited out on the same transport, not taken for a broken one. */
async function retryAfterTest(browser) {
  const proxy = await startProxy({ busyFirst: 1 });
  const { context, page } = await openTunnel(browser, proxy, {
    transports: ["sse", "longpoll"],
    paths: ["/busy/*"],
  });
  try {
    const seen = await page.evaluate(() => window.seen);
    const openMs = seen.stateTimes.find(([s]) => s === "open")[1] - seen.created;
    check(JSON.stringify(seen.transports) === '["sse"]', `Retry-After: tried ${seen.transports}`);
    check(seen.errors.includes("too many new tunnels right now; retry later"),
      `Retry-After: errors ${seen.errors}`);
    check(openMs >= 950, `Retry-After: open after ${Math.round(openMs)} ms, before the 1 s asked`);
    console.log(`ok Retry-After: waited, open on sse after ${Math.round(openMs)} ms`);
  } finally {
    await context.close();
    proxy.close();
  }
}

/** No re-attach while the page is hidden; back in view, a tunnel culled meanwhile is a gap. */
async function hiddenTest(browser) {
  const proxy = await startProxy();
  const { context, page } = await openTunnel(browser, proxy, {
    transports: ["sse"],
    paths: ["/hidden/*"],
    backoffMinMs: 200,
  });
  const setHidden = (hidden) => page.evaluate((hidden) => {
    for (const [name, value] of [["hidden", hidden], ["visibilityState", hidden ? "hidden" : "visible"]]) {
      Object.defineProperty(document, name, { configurable: true, get: () => value });
    }
    document.dispatchEvent(new Event("visibilitychange"));
  }, hidden);
  try {
    const before = await page.evaluate(() => window.t.id);
    await setHidden(true);
    const attaches = proxy.counts.attaches;
    check(await proxy.cutAll() === 1, "hidden: no connection to cut");
    // Past the router's grace (and its cull), the tunnel is gone.
    await sleep(GRACE_MS + 1500);
    check(proxy.counts.attaches === attaches,
      `hidden: ${proxy.counts.attaches - attaches} attaches while hidden`);
    check(await page.evaluate(() => window.t.state) === "reconnecting", "hidden: not waiting");
    await setHidden(false);
    await page.waitForFunction(() => window.t.state === "open", null, { timeout: 10000 });
    const seen = await page.evaluate(() => window.seen);
    const after = await page.evaluate(() => window.t.id);
    check(after !== before, "hidden: the old tunnel survived its grace");
    check(JSON.stringify(seen.gaps) === '["tunnel"]', `hidden: gaps ${seen.gaps}`);
    await publishEvent(after, "/hidden/a", { text: "back" });
    await waitForCount(page, 1, 5000);
    const datagrams = await page.evaluate(() => window.seen.datagrams);
    check(datagrams.length === 1 && datagrams[0].data.text === "back",
      "hidden: the new tunnel did not get its subscription back");
    console.log("ok hidden page: no re-attach while hidden; the lost tunnel reported as a gap, " +
      "its subscriptions restored");
  } finally {
    await context.close();
    proxy.close();
  }
}

/** On a fallback transport, the better one is tried again later, and taken once it works. */
async function upgradeTest(browser) {
  const proxy = await startProxy({ refuseWs: true });
  const { context, page } = await openTunnel(browser, proxy, {
    paths: ["/upgrade/*"],
    openTimeoutMs: 2000,
    upgradeAfterMs: 1500,
  });
  try {
    check(await page.evaluate(() => window.t.transport) === "sse", "upgrade: did not fall back");
    const tunnel = await page.evaluate(() => window.t.id);
    await publishEvent(tunnel, "/upgrade/a", { seq: 0 });
    await waitForCount(page, 1, 5000);
    // The WebSocket is still refused at the first retry; then it works.
    await sleep(2000);
    proxy.mode.refuseWs = false;
    await publishEvent(tunnel, "/upgrade/a", { seq: 1 });
    await page.waitForFunction(() => window.t.transport === "ws" && window.t.state === "open",
      null, { timeout: 10000 });
    await publishEvent(tunnel, "/upgrade/a", { seq: 2 });
    await waitForCount(page, 3, 5000);
    const seen = await page.evaluate(() => window.seen);
    const seqs = seen.datagrams.map((d) => d.data.seq).join(",");
    check(seqs === "0,1,2", `upgrade: got ${seqs}`);
    check(await page.evaluate(() => window.t.id) === tunnel, "upgrade: a new tunnel");
    check(seen.gaps.length === 0, `upgrade: gaps ${seen.gaps}`);
    console.log(`ok upgrade: ${seen.transports.join(" -> ")}, same tunnel, nothing lost`);
  } finally {
    await context.close();
    proxy.close();
  }
}

/** An HS256 JSON Web Token for the user `browser`, valid `seconds` from now, on /auth. */
function mintToken(seconds) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const claims = {
    sub: "browser",
    exp: Math.floor(Date.now() / 1000) + seconds,
    subscribe: ["/auth/*"],
    publish: ["/auth/*"],
  };
  const body = b64({ alg: "HS256", typ: "JWT" }) + "." + b64(claims);
  return body + "." + crypto.createHmac("sha256", secret).update(body).digest("base64url");
}

/**
 * With tokens (query for ws and jsonp, Authorization for sse and longpoll): open, publish,
 * receive; when the token expires the router ends the connection, and the client re-attaches
 * with a fresh one from its token function, losing nothing.
 */
async function tokenTest(browser, transport) {
  const proxy = await startProxy({}, authRouter);
  const context = await browser.newContext();
  const page = await context.newPage();
  let minted = 0;
  // Short-lived tokens, so that the first expires within the test.
  await page.exposeFunction("mintToken", () => {
    minted += 1;
    return mintToken(2);
  });
  try {
    await page.goto(proxy.base + "/blank");
    await page.evaluate(async ([base, transport]) => {
      const { Tunnel } = await import(base + "/client/router-client.js");
      const seen = { datagrams: [], gaps: [], errors: [] };
      window.seen = seen;
      const t = new Tunnel(base, {
        transports: [transport],
        paths: ["/auth/*"],
        token: () => window.mintToken(),
      });
      window.t = t;
      t.on("datagram", (d) => seen.datagrams.push(d));
      t.on("gap", (g) => seen.gaps.push(g.reason));
      t.on("error", (e) => seen.errors.push(String(e.message)));
      await new Promise((resolve) => t.on("state", (s) => s === "open" && resolve()));
      await t.publish("/auth/x", { seq: 0 });
    }, [proxy.base, transport]);
    const tunnel = await page.evaluate(() => window.t.id);
    await page.waitForFunction(() => window.seen.errors.includes("token expired"), null,
      { timeout: 10000 });
    for (let seq = 1; seq < 4; seq++) {
      await publishEvent(tunnel, "/auth/x", { seq }, authRouter, mintToken(60));
    }
    await waitForCount(page, 4, 10000);
    const seen = await page.evaluate(() => window.seen);
    const seqs = seen.datagrams.map((d) => d.data.seq).join(",");
    check(seqs === "0,1,2,3", `${transport} token: got ${seqs} (errors ${seen.errors})`);
    check(seen.gaps.length === 0, `${transport} token: gaps ${seen.gaps}`);
    check(await page.evaluate(() => window.t.id) === tunnel, `${transport} token: a new tunnel`);
    // The re-attach after the expiry carried a token other than the first attach's.
    const tokens = proxy.counts.tokens.size;
    check(tokens >= 2, `${transport} token: ${tokens} token(s) on ${proxy.counts.attaches} ` +
      `attaches (${minted} minted)`);
    console.log(`ok token ${transport}: open, publish and receive with a token; re-attached ` +
      `with a fresh one after it expired (${minted} minted), nothing lost`);
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
  await upgradeTest(browser);
  await drainTest(browser, "ws");
  await drainTest(browser, "sse");
  await retryAfterTest(browser);
  await hiddenTest(browser);
  if (authRouter) {
    for (const transport of ["ws", "sse", "longpoll", "jsonp"]) await tokenTest(browser, transport);
  } else {
    console.log("token tests not run: no --auth-router");
  }
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
