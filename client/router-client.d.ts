// Types of router-client.js, the router's browser client (docs/client.md).

/** The transports, best first. */
export type Transport = "ws" | "sse" | "longpoll" | "jsonp";
export declare const TRANSPORTS: readonly Transport[];

export type TunnelState = "connecting" | "open" | "reconnecting" | "closed";

/** A datagram as the router sends it. `binary` replaces `data` (and `id`) for a binary publish over WebSocket. */
export interface Datagram<T = unknown> {
  id: string;
  path: string;
  data: T;
  binary?: ArrayBuffer;
}

/** "replay": the router could not replay everything missed; "tunnel": the tunnel itself was lost. */
export interface Gap {
  reason: "replay" | "tunnel";
}

/** An error the router named (`code` is its message, `status` the HTTP status when there was one). */
export interface RouterError extends Error {
  code?: string;
  status?: number;
}

export interface TunnelOptions {
  /** Patterns to subscribe to from the start (sent with every attach). */
  paths?: string[];
  /** A token, or a function asked for one before each attach. */
  token?: string | null | (() => string | Promise<string>);
  /** Send cookies (`router_token`) cross-origin; needs `auth.origins_allowed` on the router. */
  withCredentials?: boolean;
  /** The preference list, best first. Default: ws, sse, longpoll, jsonp. */
  transports?: Transport[];
  /** How long an attach may take to deliver its first datagram (default 8000). */
  openTimeoutMs?: number;
  /** The first backoff ceiling (default 500). */
  backoffMinMs?: number;
  /** The largest backoff ceiling (default 20000). */
  backoffMaxMs?: number;
  /** On a transport below the best one, try the best one again after this long (default 300000). */
  upgradeAfterMs?: number;
  /** How long a long-poll waits at the router (default 25000). */
  longpollTtlMs?: number;
  /** Datagram ids remembered for de-duplication (default 4096). */
  seenMax?: number;
  /** Remember the transport that worked in sessionStorage (default true). */
  remember?: boolean;
}

export interface TunnelEvents {
  datagram: (datagram: Datagram) => void;
  state: (state: TunnelState) => void;
  gap: (gap: Gap) => void;
  error: (error: RouterError) => void;
  transport: (transport: Transport) => void;
}

export declare class Tunnel {
  constructor(url: string, options?: TunnelOptions);
  /** The tunnel id once open. */
  readonly id: string | null;
  /** The transport in use, or being tried. */
  readonly transport: Transport | null;
  readonly state: TunnelState;
  /** The id of the last datagram handed to the page. */
  readonly last: string | null;
  /** The patterns sent with every attach. */
  readonly paths: Set<string>;
  on<E extends keyof TunnelEvents>(event: E, fn: TunnelEvents[E]): () => void;
  subscribe(pattern: string): Promise<void>;
  unsubscribe(pattern: string): Promise<void>;
  /** Publishes through `/events`; resolves to the datagram's id. */
  publish(path: string, data: unknown): Promise<string>;
  close(): void;
}
