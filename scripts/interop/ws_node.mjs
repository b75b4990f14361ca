// Interop check of the router's WebSocket tunnels with the npm `ws` client (Node 20, ESM).
//
// Usage: node ws_node.mjs http://HOST:PORT
//
// For compression on (permessage-deflate offered) and off: opens a tunnel on /interop/*,
// publishes 5 datagrams through it (each answered by an ack whose id the datagram carries), reads
// them, closes, publishes 3 more through `POST /publish/interop/x`, re-attaches with `id` and
// `last` and checks that exactly those 3 arrive (same ids, `new: false`), then a sentinel proves
// nothing else was queued. Prints one line `node ws interop: OK (...)` and exits 0, or prints the
// failure and exits 1. Run by router/tests/interop.rs; needs `npm ci --prefix scripts/interop`
// (without it, the import of `ws` fails before anything runs).

import { readFileSync } from 'node:fs';
import WebSocket from 'ws';

const NAME = 'node ws interop';
// Longest wait for any one message, and for the whole check.
const RECV_TIMEOUT_MS = 5000;
const TOTAL_TIMEOUT_MS = 25000;

function fail(message) {
  console.error(`${NAME}: FAILED: ${message}`);
  process.exit(1);
}

const wsVersion = JSON.parse(
  readFileSync(new URL('./node_modules/ws/package.json', import.meta.url), 'utf8'),
).version;

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

function sameJson(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** POST /publish<path> with a JSON body; returns the datagram id. */
async function httpPublish(base, path, data) {
  const answer = await fetch(`${base}/publish${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(data),
    signal: AbortSignal.timeout(RECV_TIMEOUT_MS),
  });
  const reply = await answer.json();
  check(answer.status === 202, `POST /publish${path} answered ${answer.status} ${JSON.stringify(reply)}`);
  check(reply.ok === true && typeof reply.id === 'string', `publish answer ${JSON.stringify(reply)}`);
  return reply.id;
}

/** A connected socket whose messages queue up for `next()`. */
class Client {
  static async open(url, perMessageDeflate) {
    const client = new Client();
    client.ws = new WebSocket(url, { perMessageDeflate, handshakeTimeout: RECV_TIMEOUT_MS });
    client.queue = [];
    client.waiters = [];
    client.closed = null;
    client.extensions = null;
    client.ws.on('upgrade', (response) => {
      client.extensions = response.headers['sec-websocket-extensions'] ?? null;
    });
    client.ws.on('message', (data, isBinary) => client.push({ data, isBinary }));
    client.ws.on('close', (code, reason) => {
      client.closed = { code, reason: reason.toString() };
      client.push(null);
    });
    await new Promise((resolve, reject) => {
      client.ws.once('open', resolve);
      client.ws.once('error', reject);
    });
    client.ws.on('error', (e) => {
      client.closed = { code: 'error', reason: e.message };
      client.push(null);
    });
    return client;
  }

  push(item) {
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter(item);
    } else {
      this.queue.push(item);
    }
  }

  /** The next text frame's JSON. */
  async next(what) {
    let item;
    if (this.queue.length > 0) {
      item = this.queue.shift();
    } else {
      let timer;
      item = await Promise.race([
        new Promise((resolve) => this.waiters.push(resolve)),
        new Promise((resolve) => {
          timer = setTimeout(() => resolve('timeout'), RECV_TIMEOUT_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    check(item !== 'timeout', `no message within ${RECV_TIMEOUT_MS} ms while waiting for ${what}`);
    check(item !== null, `connection closed (${JSON.stringify(this.closed)}) while waiting for ${what}`);
    check(!item.isBinary, `expected a text frame for ${what}, got binary`);
    return JSON.parse(item.data.toString('utf8'));
  }

  async close() {
    if (this.closed) {
      return;
    }
    const done = new Promise((resolve) => this.ws.once('close', resolve));
    this.ws.close(1000, 'done');
    await done;
  }

  checkExtension(deflate) {
    if (deflate) {
      check(
        this.extensions !== null && this.extensions.startsWith('permessage-deflate'),
        `permessage-deflate offered but not negotiated (Sec-WebSocket-Extensions: ${this.extensions})`,
      );
    } else {
      check(this.extensions === null, `no extension offered, yet the server answered ${this.extensions}`);
    }
  }
}

async function runOnce(base, deflate) {
  const wsBase = 'ws' + base.slice('http'.length);
  const label = deflate ? 'deflate' : 'plain';
  const path = '/interop/x';
  const payload = (n) => ({ n, via: 'websocket', text: 'é' + 'x'.repeat(200) });

  // 1. A new tunnel on /interop/*; 5 publishes through it, each acked and delivered.
  let ws = await Client.open(`${wsBase}/tunnel?format=ws&path=/interop/*`, deflate);
  ws.checkExtension(deflate);
  const extension = ws.extensions;
  let control = await ws.next('the tunnel datagram');
  check(control.type === 'tunnel', `first message ${JSON.stringify(control)}`);
  check(control.new === true, `a new tunnel says new:true: ${JSON.stringify(control)}`);
  check(Number.isInteger(control.keepalive_ms), `keepalive_ms in ${JSON.stringify(control)}`);
  const tunnel = control.tunnel;
  for (let n = 0; n < 5; n++) {
    ws.ws.send(JSON.stringify({ type: 'publish', path, data: payload(n) }));
  }
  const acks = [];
  const datagrams = [];
  while (acks.length < 5 || datagrams.length < 5) {
    const message = await ws.next('acks and datagrams');
    if (message.type === 'ack') {
      acks.push(message.id);
    } else if ('id' in message && 'path' in message) {
      datagrams.push(message);
    } else {
      throw new Error(`unexpected message ${JSON.stringify(message)}`);
    }
  }
  check(
    sameJson(datagrams.map((d) => d.id), acks),
    `datagram ids ${datagrams.map((d) => d.id)} are not the acked ids ${acks}`,
  );
  datagrams.forEach((d, n) => {
    check(d.path === path && sameJson(d.data, payload(n)), `datagram ${n} is ${JSON.stringify(d)}`);
  });
  const last = datagrams[datagrams.length - 1].id;
  await ws.close();

  // 2. Three publishes while the tunnel is detached.
  const missed = [];
  for (let n = 0; n < 3; n++) {
    missed.push(await httpPublish(base, path, { missed: n }));
  }

  // 3. Re-attach after `last`: exactly the 3 missed datagrams, then a sentinel.
  ws = await Client.open(`${wsBase}/tunnel?format=ws&id=${tunnel}&last=${last}`, deflate);
  ws.checkExtension(deflate);
  control = await ws.next('the tunnel datagram after re-attach');
  check(
    control.type === 'tunnel' && control.tunnel === tunnel,
    `re-attach answered ${JSON.stringify(control)}`,
  );
  check(control.new === false, `re-attach says new:false: ${JSON.stringify(control)}`);
  for (let n = 0; n < missed.length; n++) {
    const d = await ws.next(`missed datagram ${n}`);
    check(
      sameJson(d, { id: missed[n], path, data: { missed: n } }),
      `replay ${n}: ${JSON.stringify(d)}`,
    );
  }
  const sentinel = await httpPublish(base, path, 'sentinel');
  const d = await ws.next('the sentinel');
  check(
    sameJson(d, { id: sentinel, path, data: 'sentinel' }),
    `after the replay: ${JSON.stringify(d)}`,
  );
  await ws.close();
  return `${label}: tunnel ${tunnel}, 5 acked, 3 replayed` + (extension ? ` [${extension}]` : '');
}

const base = (process.argv[2] ?? '').replace(/\/$/, '');
if (!base.startsWith('http://')) {
  console.error(`usage: node ws_node.mjs http://HOST:PORT`);
  process.exit(1);
}
const watchdog = setTimeout(() => fail(`not done within ${TOTAL_TIMEOUT_MS} ms`), TOTAL_TIMEOUT_MS);
try {
  const results = [];
  for (const deflate of [true, false]) {
    results.push(await runOnce(base, deflate));
  }
  clearTimeout(watchdog);
  console.log(`${NAME}: OK (ws ${wsVersion}; ${results.join('; ')})`);
  process.exit(0);
} catch (e) {
  fail(e instanceof Error ? e.message : String(e));
}
