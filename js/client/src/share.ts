import type { CountsEvent, HeraldMessage, Locks, ResetEvent, StateChange } from './types.js';

/**
 * What tabs tell each other on the BroadcastChannel. From the leader (the tab
 * holding the Web Lock, the only one connected): m a message, c counts, r a
 * reset, s its state. From a follower: h "hello, what is the state?", w
 * "wake up" (this tab came online or visible: reconnect now if waiting).
 */
export type Relay =
  | { k: 'm'; m: HeraldMessage }
  | { k: 'c'; c: CountsEvent }
  | { k: 'r'; r: ResetEvent }
  | { k: 's'; s: StateChange }
  | { k: 'h' }
  | { k: 'w' };

export interface Shared {
  post(r: Relay): void;
  /** Gives the lock up (or stops waiting for it) and closes the channel. */
  leave(): void;
}

/**
 * Joins the tabs that share `name`: asks for the Web Lock `name` and holds it
 * for as long as this tab is the leader (until leave(), or until the tab
 * closes, when the browser releases it and the next waiting tab gets it);
 * listens to the BroadcastChannel `name`. lead() runs when this tab gets the
 * lock; relay() for every message from another tab.
 *
 * Kept out of the core so that Herald works without it, one connection per
 * tab, where either API is missing (older Safari, Node, workers).
 */
export function join(name: string, locks: Locks, BC: typeof BroadcastChannel, lead: () => void, relay: (r: Relay) => void): Shared {
  const ch = new BC(name);
  const stop = new AbortController();
  let release: (() => void) | undefined;
  let open = true;
  ch.onmessage = (e: MessageEvent<Relay>) => open && relay(e.data);
  locks
    .request(name, { signal: stop.signal }, () =>
      new Promise<void>((r) => {
        release = r;
        lead();
      }),
    )
    .catch(() => {}); // AbortError after leave(): nothing to do
  const post = (r: Relay) => {
    if (open) ch.postMessage(r);
  };
  post({ k: 'h' });
  return {
    post,
    leave() {
      open = false;
      stop.abort();
      release?.();
      ch.close();
    },
  };
}
