// router-client.js: the browser client of the router. One Tunnel object keeps one tunnel open
// over the best transport that works (WebSocket, SSE, long-poll, JSONP), re-attaches after every
// drop with the id of the last datagram it processed, and hands each datagram to the page
// exactly once and in order. No dependencies; an ES module. docs/client.md explains the rules.

/** The transports, best first. */
export const TRANSPORTS = Object.freeze(["ws", "sse", "longpoll", "jsonp"]);

const DEFAULTS = Object.freeze({
  paths: [],
  transports: TRANSPORTS,
  token: null,
  withCredentials: false,
  openTimeoutMs: 8000,
  backoffMinMs: 500,
  backoffMaxMs: 20000,
  upgradeAfterMs: 300000,
  longpollTtlMs: 25000,
  seenMax: 4096,
  remember: true,
});

/** How long a drained router's clients spread their return over (close 1012, SSE `retry:`). */
const DRAIN_SPREAD_MS = 5000;
/** An attachment that lasted less than this and ended cleanly still backs off before the next. */
const SHORT_ATTACHMENT_MS = 1000;
/** Slack on top of the router's keepalive interval before a silent connection counts as dead. */
const WATCHDOG_SLACK_MS = 5000;

let jsonpCounter = 0;

/**
 * A tunnel to a router: subscriptions, datagrams, publishing, across reconnects.
 *
 * Events (`on(name, fn)`): `datagram` ({id, path, data}), `state` ("connecting", "open",
 * "reconnecting", "closed"), `gap` ({reason}: "replay" when the router could not replay what was
 * missed, "tunnel" when the tunnel itself was lost), `error` (an Error with `.code` when the
 * router named one), `transport` (the transport's name, when it changes).
 */
export class Tunnel {
  /**
   * @param {string} url the router's base URL ("https://push.example.com"); relative URLs resolve
   *   against the page.
   * @param {object} [options]
   * @param {string[]} [options.paths] patterns to subscribe to from the start.
   * @param {string|(() => string|Promise<string>)|null} [options.token] a token, or a function
   *   asked for one before each attach; sent as `Authorization: Bearer` on fetch requests and as
   *   `?token=` where a browser cannot send headers (WebSocket, JSONP).
   * @param {boolean} [options.withCredentials] send cookies (the `router_token` cookie) with
   *   cross-origin requests; needs `auth.origins_allowed` on the router.
   * @param {string[]} [options.transports] the preference list, best first.
   * @param {number} [options.openTimeoutMs] how long an attach may take to deliver the tunnel's
   *   first datagram before the transport counts as failed (a buffering proxy).
   */
  constructor(url, options = {}) {
    // An option given as undefined takes its default.
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    const o = { ...DEFAULTS, ...given };
    const base = new URL(url, typeof location === "undefined" ? undefined : location.href);
    this.url = base.href.replace(/\/+$/, "");
    this.options = o;
    this.transports = o.transports.filter((t) => TRANSPORTS.includes(t));
    if (this.transports.length === 0) {
      throw new TypeError("transports must name at least one of " + TRANSPORTS.join(", "));
    }
    /** @type {string|null} the tunnel id once open. */
    this.id = null;
    /** @type {string|null} the transport in use (or being tried). */
    this.transport = null;
    /** @type {string} connecting, open, reconnecting or closed. */
    this.state = "connecting";
    this.last = null;
    this.paths = new Set(o.paths);
    this._handlers = new Map();
    this._seen = new Set();
    this._failures = 0;
    this._tried = 0;
    this._conn = null;
    this._timer = null;
    this._upgradeTimer = null;
    this._closed = false;
    this._openWaiters = [];
    this._index = this._rememberedIndex();
    this._onVisible = () => {
      if (!document.hidden && this._waitingVisible) {
        this._waitingVisible = false;
        this._connect();
      }
    };
    if (typeof document !== "undefined") {
      document.addEventListener("visibilitychange", this._onVisible);
    }
    // After the caller's `on(...)` calls, so that they see the first transport tried too.
    queueMicrotask(() => this._connect());
  }

  /**
   * Calls `fn` on each `event`; returns a function that stops it.
   * @param {string} event
   * @param {Function} fn
   * @returns {() => void}
   */
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return () => this._handlers.get(event)?.delete(fn);
  }

  /**
   * Adds a pattern. It is sent with every attach, so it survives a lost tunnel.
   * @param {string} pattern
   * @returns {Promise<void>} settles when the router took it (at once before the tunnel has an
   *   id: the first attach carries it).
   */
  async subscribe(pattern) {
    this.paths.add(pattern);
    await this._patternCall("subscribe", pattern);
  }

  /**
   * Removes exactly `pattern`.
   * @param {string} pattern
   * @returns {Promise<void>}
   */
  async unsubscribe(pattern) {
    this.paths.delete(pattern);
    await this._patternCall("unsubscribe", pattern);
  }

  async _patternCall(kind, pattern) {
    // Before the first attach, `paths` is all there is. A detached tunnel takes subscriptions
    // too, so a change made mid-reconnect is not late.
    if (!this.id) return;
    try {
      await this._call(kind, { path: pattern });
    } catch (e) {
      // A tunnel the router no longer knows is replaced on the next attach, with `paths`.
      if (e.code !== "unknown tunnel") throw e;
    }
  }

  /**
   * Publishes `data` on `path` through this tunnel (`/events`), once the tunnel has an id.
   * @param {string} path
   * @param {*} data any JSON value
   * @returns {Promise<string>} the datagram's id.
   */
  async publish(path, data) {
    const id = await this._whenOpen();
    const answer = await this._call("events", { tunnel: id, path, data });
    return answer.id;
  }

  /** Ends the tunnel's connection for good (the router culls the tunnel after its grace). */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    clearTimeout(this._upgradeTimer);
    this._dropConnection();
    if (typeof document !== "undefined") {
      document.removeEventListener("visibilitychange", this._onVisible);
    }
    for (const w of this._openWaiters) w.reject(new Error("tunnel closed"));
    this._openWaiters = [];
    this._setState("closed");
  }

  // ---- events ----

  _emit(event, ...args) {
    for (const fn of this._handlers.get(event) ?? []) {
      try {
        fn(...args);
      } catch (e) {
        // A handler's own bug must not stop delivery; it is reported where the page sees it.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state);
  }

  /** The tunnel id: at once once known (the router takes events for a detached tunnel too). */
  _whenOpen() {
    if (this.id) return Promise.resolve(this.id);
    if (this._closed) return Promise.reject(new Error("tunnel closed"));
    return new Promise((resolve, reject) => this._openWaiters.push({ resolve, reject }));
  }

  // ---- transport choice ----

  _storageKey() {
    return "router-client:transport:" + this.url;
  }

  /** The transport that worked last in this browsing session, so a reload does not retry them all. */
  _rememberedIndex() {
    if (!this.options.remember) return 0;
    try {
      const name = sessionStorage.getItem(this._storageKey());
      const i = this.transports.indexOf(name);
      return i < 0 ? 0 : i;
    } catch {
      return 0;
    }
  }

  _remember(name) {
    if (!this.options.remember) return;
    try {
      sessionStorage.setItem(this._storageKey(), name);
    } catch {
      // Storage may be disabled; remembering is only an optimisation.
    }
  }

  // ---- the connection cycle ----

  async _connect() {
    if (this._closed || this._conn) return;
    if (typeof document !== "undefined" && document.hidden && this.id) {
      // Nobody is looking: reconnecting now would only add to a storm. Wait for the page.
      this._waitingVisible = true;
      return;
    }
    const name = this.transports[this._index];
    if (this.transport !== name) {
      this.transport = name;
      this._emit("transport", name);
    }
    let token = null;
    try {
      token = await this._token();
    } catch (e) {
      this._emit("error", e);
      this._retry(this._backoffMs());
      return;
    }
    if (this._closed || this._conn) return;
    const Kind = KINDS[name];
    const conn = new Kind(this, token);
    this._conn = conn;
    conn.opened = false;
    conn.started = Date.now();
    // The first datagram must come within openTimeoutMs: a proxy that buffers the stream lets
    // the connection open and then delivers nothing.
    conn.openTimer = setTimeout(() => this._ended(conn, { failed: true, reason: "no data" }),
      this.options.openTimeoutMs);
    conn.start();
  }

  async _token() {
    const t = this.options.token;
    return typeof t === "function" ? await t() : t;
  }

  /** The URL of an attach with everything a re-attach needs. */
  _tunnelUrl(format, token, extra = {}) {
    const u = new URL(this.url + "/tunnel");
    u.searchParams.set("format", format);
    for (const p of this.paths) u.searchParams.append("path", p);
    if (this.id) {
      u.searchParams.set("id", this.id);
      // The tunnel's own id as `last` means "nothing processed yet": a connection that broke
      // before its first datagram was processed gets that datagram back.
      u.searchParams.set("last", this.last ?? this.id);
    }
    for (const [k, v] of Object.entries(extra)) u.searchParams.set(k, v);
    if (token) u.searchParams.set("token", token);
    return u;
  }

  /** Handles one datagram or control datagram from the connection `conn`. */
  _receive(conn, d) {
    if (conn !== this._conn || !d || typeof d !== "object") return;
    this._armWatchdog(conn);
    if (d.type === "tunnel") {
      this._opened(conn, d);
      return;
    }
    if (!conn.opened) return;
    if (d.type === "keepalive") return;
    if (d.type === "gap") {
      this._emit("gap", { reason: "replay" });
      return;
    }
    if (d.type === "error") {
      const e = new Error(d.error);
      e.code = d.error;
      this._emit("error", e);
      // The router ends the connection of an expired token; a poller would only send the same
      // token again. Re-attach at once, asking the token function for a fresh one.
      if (d.error === "token expired") this._ended(conn, { clean: true, now: true });
      return;
    }
    if (d.type) return;
    if (typeof d.id === "string") {
      if (this._seen.has(d.id)) return;
      this._seen.add(d.id);
      if (this._seen.size > this.options.seenMax) {
        this._seen.delete(this._seen.values().next().value);
      }
    }
    this._emit("datagram", d);
    // Only after the page processed it: a crash in between replays it rather than losing it.
    if (typeof d.id === "string") this.last = d.id;
  }

  /** A long-poll answer: the `tunnel` datagram comes only when a poll creates the tunnel. */
  _answer(conn, answer) {
    const messages = answer.messages ?? [];
    if (!conn.opened && !messages.some((d) => d && d.type === "tunnel")) {
      this._receive(conn, { type: "tunnel", tunnel: answer.tunnel, new: answer.tunnel !== this.id });
    }
    for (const d of messages) this._receive(conn, d);
  }

  _opened(conn, d) {
    clearTimeout(conn.openTimer);
    conn.opened = true;
    conn.keepaliveMs = d.keepalive_ms || 15000;
    this._armWatchdog(conn);
    if (this.id && d.new) {
      // The old tunnel is gone with what it held; a restarted router reuses datagram ids.
      this._seen.clear();
      this.last = null;
      this._emit("gap", { reason: "tunnel" });
    }
    this.id = d.tunnel;
    this._failures = 0;
    this._tried = 0;
    this._remember(this.transport);
    this._setState("open");
    for (const w of this._openWaiters) w.resolve(this.id);
    this._openWaiters = [];
    this._scheduleUpgrade();
  }

  /**
   * A stream that stays silent past twice the keepalive interval is dead. Polls have their own
   * timeout, and a WebSocket's keepalives are pings that page scripts never see.
   */
  _armWatchdog(conn) {
    if (!conn.opened || conn.ownTimeout) return;
    clearTimeout(conn.watchdog);
    conn.watchdog = setTimeout(() => this._ended(conn, { reason: "silent" }),
      2 * conn.keepaliveMs + WATCHDOG_SLACK_MS);
  }

  /** On a transport below the best one, tries the best one again now and then. */
  _scheduleUpgrade() {
    clearTimeout(this._upgradeTimer);
    if (this._index === 0) return;
    this._upgradeTimer = setTimeout(() => {
      if (this._closed || this.state !== "open") return;
      this._index = 0;
      this._tried = 0;
      // The tunnel re-attaches over the better transport: nothing is lost, and if it still
      // fails, the fallback rules bring it back down.
      const conn = this._conn;
      this._dropConnection();
      if (conn) {
        this._setState("reconnecting");
        this._connect();
      }
    }, this.options.upgradeAfterMs);
  }

  _dropConnection() {
    const conn = this._conn;
    if (!conn) return;
    this._conn = null;
    clearTimeout(conn.openTimer);
    clearTimeout(conn.watchdog);
    conn.stop();
  }

  /**
   * The connection `conn` ended. `how`: {clean} for an end the router chose (replaced,
   * recycled; {now} to re-attach at once however short it was), {failed} when it never delivered its first datagram, {delayMs} for a delay the
   * router asked for (Retry-After, `retry:`, drain), {error} to report.
   */
  _ended(conn, how = {}) {
    if (conn !== this._conn || this._closed) return;
    const opened = conn.opened;
    this._dropConnection();
    if (how.error) this._emit("error", how.error);
    this._setState("reconnecting");
    // A 4xx answer (a refused token, a path not allowed) came from the router over this very
    // transport: another transport would be refused alike.
    const refused = how.error?.status >= 400 && how.error.status < 500;
    if (!opened && !how.delayMs && !refused) {
      // Never opened: the next transport may work. Once every one has failed, start again
      // from the preferred one after a backoff.
      this._tried += 1;
      if (this._tried < this.transports.length) {
        this._index = (this._index + 1) % this.transports.length;
        this._retry(0);
        return;
      }
      this._tried = 0;
      this._index = 0;
      this._retry(this._backoffMs());
      return;
    }
    if (how.delayMs) {
      this._retry(how.delayMs);
      return;
    }
    const lasted = Date.now() - conn.started;
    if (how.clean && (how.now || lasted >= SHORT_ATTACHMENT_MS)) {
      this._failures = 0;
      this._retry(0);
      return;
    }
    this._retry(this._backoffMs());
  }

  /** Full jitter: anywhere between 0 and a ceiling that doubles from backoffMinMs to backoffMaxMs. */
  _backoffMs() {
    const o = this.options;
    const ceiling = Math.min(o.backoffMaxMs, o.backoffMinMs * 2 ** this._failures);
    this._failures += 1;
    return Math.random() * ceiling;
  }

  _retry(delayMs) {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._connect(), delayMs);
  }

  // ---- HTTP calls (subscribe, unsubscribe, events) ----

  async _call(kind, body) {
    const id = this.id;
    const path = kind === "events" ? "/events" : "/tunnel/" + encodeURIComponent(id) + "/" + kind;
    const token = await this._token();
    if (this.transport === "jsonp") return jsonpCall(this.url + path, body, token);
    // text/plain keeps the request simple: no CORS preflight (a token header needs one).
    const headers = { "Content-Type": "text/plain;charset=UTF-8" };
    if (token) headers.Authorization = "Bearer " + token;
    const res = await fetch(this.url + path, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      credentials: this.options.withCredentials ? "include" : "same-origin",
    });
    const answer = await res.json().catch(() => ({ ok: false, error: "HTTP " + res.status }));
    if (!answer.ok) throw routerError(answer.error, res.status);
    return answer;
  }
}

function routerError(message, status) {
  const e = new Error(message || "request failed");
  e.code = message;
  e.status = status;
  return e;
}

/** Milliseconds from a Retry-After header (seconds or an HTTP date), or null. */
function retryAfterMs(res) {
  const v = res.headers.get("Retry-After");
  if (!v) return null;
  const s = Number(v);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const t = Date.parse(v);
  return Number.isFinite(t) ? Math.max(0, t - Date.now()) : null;
}

/** A random delay within the window a drained router asks its clients to spread over. */
function drainDelayMs() {
  return 500 + Math.random() * (DRAIN_SPREAD_MS - 500);
}

/** A `GET` through a `<script>` element, for pages that cannot make cross-origin requests. */
function jsonpCall(url, body, token) {
  const u = new URL(url);
  for (const [k, v] of Object.entries(body)) {
    u.searchParams.set(k, k === "data" ? JSON.stringify(v) : v);
  }
  if (token) u.searchParams.set("token", token);
  return new Promise((resolve, reject) => {
    const script = jsonpScript(u, (answer) => {
      if (answer && answer.ok) resolve(answer);
      else reject(routerError(answer && answer.error));
    }, () => reject(routerError("request failed")));
    document.head.appendChild(script);
  });
}

/** A script element that loads `url` with a fresh callback name; calls `done` or `failed` once. */
function jsonpScript(url, done, failed) {
  const name = "__routerClient" + ++jsonpCounter;
  url.searchParams.set("cb", name);
  const script = document.createElement("script");
  let settled = false;
  const finish = () => {
    settled = true;
    delete globalThis[name];
    script.remove();
  };
  globalThis[name] = (answer) => {
    if (settled) return;
    finish();
    done(answer);
  };
  // An error status or a broken connection: the script never calls back.
  script.onerror = () => {
    if (settled) return;
    finish();
    failed();
  };
  script.onload = () => {
    if (settled) return;
    finish();
    failed();
  };
  script.src = url.href;
  script.abort = () => {
    if (!settled) {
      // A late answer must find a function that ignores it rather than a ReferenceError.
      settled = true;
      globalThis[name] = () => delete globalThis[name];
      script.remove();
    }
  };
  return script;
}

// ---- transports: each has start() and stop(), and reports to tunnel._receive / _ended ----

class WsConnection {
  constructor(tunnel, token) {
    this.tunnel = tunnel;
    this.token = token;
  }

  start() {
    const u = this.tunnel._tunnelUrl("ws", this.token);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(u.href);
    this.ws = ws;
    this.ownTimeout = true;
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") {
        // A datagram published as binary: raw bytes, without an id to de-duplicate by.
        this.tunnel._receive(this, { binary: ev.data });
        return;
      }
      let d;
      try {
        d = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.tunnel._receive(this, d);
    };
    ws.onclose = (ev) => {
      if (ev.code === 1012) {
        this.tunnel._ended(this, { delayMs: drainDelayMs() });
      } else if (ev.code === 1000) {
        this.tunnel._ended(this, { clean: true });
      } else {
        this.tunnel._ended(this, {});
      }
    };
  }

  stop() {
    const ws = this.ws;
    ws.onmessage = ws.onclose = null;
    ws.close();
  }
}

/** Reads a `text/event-stream` body with fetch, so `retry:` and the HTTP status stay visible. */
class SseConnection {
  constructor(tunnel, token) {
    this.tunnel = tunnel;
    this.token = token;
    this.abort = new AbortController();
  }

  async start() {
    const t = this.tunnel;
    let retryMs = null;
    try {
      // The token goes in a header: unlike EventSource, fetch can send one.
      const res = await fetch(t._tunnelUrl("sse", null), {
        headers: this.token ? { Authorization: "Bearer " + this.token } : {},
        credentials: t.options.withCredentials ? "include" : "same-origin",
        cache: "no-store",
        signal: this.abort.signal,
      });
      if (!res.ok || !res.body) {
        await this.refused(res);
        return;
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        t._armWatchdog(this);
        buffer += value;
        // Events end with a blank line; an incomplete trailing event waits for more.
        let end;
        while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
          let data = null;
          for (const line of event.split(/\r?\n/)) {
            if (line.startsWith("data:")) {
              data = (data === null ? "" : data + "\n") + line.slice(5).replace(/^ /, "");
            } else if (line.startsWith("retry:")) {
              const ms = Number(line.slice(6).trim());
              if (Number.isFinite(ms)) retryMs = ms;
            }
          }
          if (data !== null) {
            try {
              t._receive(this, JSON.parse(data));
            } catch {
              // Not JSON: not ours to deliver.
            }
          }
        }
      }
      t._ended(this, retryMs !== null ? { delayMs: retryMs } : { clean: true });
    } catch (e) {
      if (!this.abort.signal.aborted) t._ended(this, {});
    }
  }

  async refused(res) {
    const t = this.tunnel;
    const answer = await res.json().catch(() => null);
    const error = routerError(answer?.error ?? "HTTP " + res.status, res.status);
    const delayMs = retryAfterMs(res);
    t._ended(this, delayMs !== null ? { delayMs, error } : { error });
  }

  stop() {
    this.abort.abort();
  }
}

/** One request at a time: `GET /tunnel?format=longpoll`, then again right after each answer. */
class LongpollConnection {
  constructor(tunnel, token) {
    this.tunnel = tunnel;
    this.token = token;
    this.abort = new AbortController();
    this.ownTimeout = true;
  }

  async start() {
    const t = this.tunnel;
    try {
      for (;;) {
        const ttl = this.opened ? t.options.longpollTtlMs : 0;
        const res = await this.poll(ttl);
        if (!res) return;
        t._answer(this, res);
        if (t._conn !== this) return;
      }
    } catch (e) {
      if (!this.abort.signal.aborted) t._ended(this, {});
    }
  }

  async poll(ttl) {
    const t = this.tunnel;
    const u = t._tunnelUrl("longpoll", null, { ttl: String(ttl) });
    const headers = this.token ? { Authorization: "Bearer " + this.token } : {};
    // A poll that outlives its ttl by far is stuck in a proxy: abort it and poll again.
    const timer = setTimeout(() => this.abort.abort(), ttl + WATCHDOG_SLACK_MS * 2);
    try {
      const res = await fetch(u, {
        headers,
        credentials: t.options.withCredentials ? "include" : "same-origin",
        cache: "no-store",
        signal: this.abort.signal,
      });
      const answer = await res.json().catch(() => null);
      if (!res.ok || !answer || !answer.ok) {
        const error = routerError(answer?.error ?? "HTTP " + res.status, res.status);
        const delayMs = retryAfterMs(res);
        t._ended(this, delayMs !== null ? { delayMs, error } : { error });
        return null;
      }
      return answer;
    } finally {
      clearTimeout(timer);
    }
  }

  stop() {
    this.abort.abort();
  }
}

/** Long-polling through `<script>` elements, for pages that cannot make cross-origin requests. */
class JsonpConnection {
  constructor(tunnel, token) {
    this.tunnel = tunnel;
    this.token = token;
    this.ownTimeout = true;
    this.stopped = false;
  }

  start() {
    this.poll();
  }

  poll() {
    if (this.stopped) return;
    const t = this.tunnel;
    const ttl = this.opened ? t.options.longpollTtlMs : 0;
    const u = t._tunnelUrl("jsonp", this.token, { ttl: String(ttl) });
    const script = jsonpScript(u, (answer) => {
      clearTimeout(this.timer);
      if (!answer || !answer.ok) {
        t._ended(this, { error: routerError(answer?.error) });
        return;
      }
      t._answer(this, answer);
      if (t._conn === this) this.poll();
    }, () => {
      clearTimeout(this.timer);
      t._ended(this, {});
    });
    this.script = script;
    this.timer = setTimeout(() => {
      script.abort();
      t._ended(this, {});
    }, ttl + WATCHDOG_SLACK_MS * 2);
    document.head.appendChild(script);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.script?.abort();
  }
}

const KINDS = { ws: WsConnection, sse: SseConnection, longpoll: LongpollConnection, jsonp: JsonpConnection };
