import type { HeraldMessage, Mark } from './protocol.js';

export type { HeraldMessage, Mark } from './protocol.js';

export type State = 'connecting' | 'connected' | 'disconnected' | 'closed';
export type Transport = 'websocket' | 'sse';

/** Every 'state' event. `closed` is final: nothing follows it. */
export interface StateChange {
  state: State;
  /** Why, for humans: "token expired", "heartbeat timeout", "offline", … */
  reason?: string;
  /** The close code that ended the connection (docs/api.md "Close codes"). */
  code?: number;
  transport?: Transport;
  /** Reconnect attempts since the last connection that stayed up (backoff's exponent). */
  attempt?: number;
  /** ms until the next attempt, on 'disconnected'. */
  retryIn?: number;
}

/** Unread and unseen counts over the inbox's messages that are not archived. */
export interface Counts {
  unread: number;
  unseen: number;
}

/** A 'counts' event: the server's push says what changed (`mark`, `ids`); a fetch or a new message has neither. */
export interface CountsEvent extends Counts {
  mark?: Mark;
  ids?: string[];
}

/** A 'reset' event: the resume point could not be honoured; refetch the inbox. Messages after `offset` follow. */
export interface ResetEvent {
  reason: string;
  epoch: string;
  offset: number;
}

/** One inbox entry as GET /v1/inbox returns it: the message envelope plus its state. */
export interface InboxItem<T = unknown> {
  id: string;
  offset: number;
  epoch: string;
  ts: string;
  data: T;
  seen: boolean;
  read: boolean;
  archived: boolean;
}

/** GET /v1/inbox's query (docs/api.md "Inbox"). */
export interface InboxQuery {
  /** all (default: everything not archived), unread (not read, not archived), archived. */
  status?: 'all' | 'unread' | 'archived';
  /** An offset: only older messages (pass the previous page's `next`). */
  before?: number;
  /** Page size; server default 50, max 200. */
  limit?: number;
}

/** A page of the inbox, newest first. `next` is the `before` of the next (older) page, null at the end. */
export interface InboxPage<T = unknown> {
  messages: InboxItem<T>[];
  next: number | null;
}

/** The reply of the mark routes: the new counts and the ids whose state actually changed. */
export interface MarkResult extends Counts {
  changed: string[];
}

export interface Inbox<T = unknown> {
  list(query?: InboxQuery): Promise<InboxPage<T>>;
  markSeen(ids: string[]): Promise<MarkResult>;
  markAllSeen(): Promise<MarkResult>;
  markRead(ids: string[]): Promise<MarkResult>;
  markAllRead(): Promise<MarkResult>;
  archive(ids: string[]): Promise<MarkResult>;
  counts(): Promise<Counts>;
}

export interface HeraldEvents<T = unknown> {
  message: HeraldMessage<T>;
  counts: CountsEvent;
  state: StateChange;
  reset: ResetEvent;
  error: Error;
}

/** The subset of the Web Locks API the client uses (navigator.locks). */
export interface Locks {
  request(name: string, options: { signal?: AbortSignal }, callback: () => Promise<void>): Promise<unknown>;
}

export interface HeraldOptions {
  /** Herald's base URL, http(s)://host[:port][/prefix]. */
  url: string;
  /** Returns a client token (JWT). Called on every (re)connect, before the token expires, and by inbox calls that have none fresh. */
  getToken: () => Promise<string> | string;
  /** Where the WebSocket carries the token: 'protocol' (default) is the `herald.token.<jwt>` subprotocol, which keeps it out of URLs and logs; 'query' is `?token=`. SSE always uses `?token=`. */
  tokenIn?: 'protocol' | 'query';
  /** Transports in order of preference; default ['websocket', 'sse']. The next is used after 3 failed connects in a row that never opened. */
  transports?: Transport[];
  /** ms; defaults base 500, cap 30000, stableAfter 60000 (a connection up that long resets the attempt count). */
  backoff?: { base?: number; cap?: number; stableAfter?: number };
  /** ms without any message on a WebSocket before it is deemed dead; default 62500 (2.5 × Herald's 25 s ping). */
  heartbeatTimeout?: number;
  /** 'auto' (default): one connection per origin and user, shared by all tabs (Web Locks + BroadcastChannel), when the browser has both. */
  share?: 'auto' | 'none';
  /** true (default): ack an offset once every 'message' handler of it and of all before it returned (promises settled). false: ack on receipt. */
  ackAfterHandler?: boolean;
  /** Where the resume point survives a reload; default sessionStorage when available; null for none. */
  storage?: Storage | null;
  WebSocket?: typeof WebSocket;
  EventSource?: typeof EventSource;
  fetch?: typeof fetch;
  /** Injectable for tests; default navigator.locks. null disables sharing. */
  locks?: Locks | null;
  /** Injectable for tests; default globalThis.BroadcastChannel. null disables sharing. */
  BroadcastChannel?: typeof BroadcastChannel | null;
}
