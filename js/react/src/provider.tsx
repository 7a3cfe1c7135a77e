'use client';
import { Herald } from '@herald/client';
import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from 'react';
import { HeraldStore } from './store.js';
import type { HeraldClient, HeraldOptions } from './types.js';

/** The provider's store; null outside a provider. */
export const HeraldContext = createContext<HeraldStore | null>(null);
HeraldContext.displayName = 'Herald';

interface OwnClient {
  /** Base URL of Herald, http(s)://host[:port]. A new url means a new client. */
  url: string;
  /**
   * Returns a client token for the user; called on every (re)connect and before the token
   * expires. May change from render to render without reconnecting (the latest is called).
   */
  getToken: () => Promise<string> | string;
  /**
   * The rest of the client's options, read when the client is created: later changes are
   * ignored (give the provider a new `key` to start over with new ones).
   */
  options?: Omit<HeraldOptions, 'url' | 'getToken'>;
  /** Makes the client; default `new Herald(opts)`. For tests and custom clients. */
  createClient?: (opts: HeraldOptions) => HeraldClient;
  client?: undefined;
}

interface SharedClient {
  /**
   * A client the application owns: the provider neither connects nor closes it, and reads
   * state from it as it is.
   */
  client: HeraldClient;
  url?: undefined;
  getToken?: undefined;
  options?: undefined;
  createClient?: undefined;
}

export type HeraldProviderProps = (OwnClient | SharedClient) & { children?: ReactNode };

const defaultCreate = (opts: HeraldOptions): HeraldClient => new Herald(opts);

/**
 * HeraldProvider holds the one Herald client of the tree below it.
 *
 * The client is created in an effect — never during render, never on the server — connected
 * there and closed when the provider unmounts. A StrictMode remount or a fast refresh keeps
 * it (the close is deferred by a microtask that the remount cancels), so development shows
 * one socket, as production does.
 */
export function HeraldProvider(props: HeraldProviderProps): ReactNode {
  const [store] = useState(() => new HeraldStore());
  const getToken = useRef(props.getToken);
  const latest = useRef(props);
  useEffect(() => {
    getToken.current = props.getToken;
    latest.current = props;
  });

  const { url, client } = props;
  useEffect(() => {
    if (client) {
      store.acquire(client, () => client, false);
    } else {
      // url is defined: the props are OwnClient.
      store.acquire(url, () => {
        const p = latest.current as OwnClient;
        const make = p.createClient ?? defaultCreate;
        return make({
          ...p.options,
          url: url as string,
          getToken: () => {
            const fn = getToken.current;
            if (!fn) throw new Error('HeraldProvider: getToken is gone');
            return fn();
          },
        });
      }, true);
    }
    return () => store.release();
  }, [store, url, client]);

  return <HeraldContext.Provider value={store}>{props.children}</HeraldContext.Provider>;
}

/** useHeraldStore is the provider's store, or an error naming the hook used outside one. */
export function useHeraldStore(hook: string): HeraldStore {
  const store = useContext(HeraldContext);
  if (!store) throw new Error(`${hook} must be used inside <HeraldProvider>`);
  return store;
}
