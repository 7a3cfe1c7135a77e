'use client';
import { useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import { InboxStore, type InboxSnapshot } from './inbox.js';
import { useHeraldStore } from './provider.js';
import { DEFAULT_LIMIT, INITIAL_CONNECTION, NO_MESSAGES, type ConnectionInfo } from './store.js';
import type { Counts, HeraldClient, HeraldMessage, InboxFilter } from './types.js';

// Server snapshots are constants: the server render and the hydrating render must agree,
// whatever the client has received by the time a late boundary hydrates.
const noClient = (): null => null;
const noCounts = (): null => null;
const zero = (): number => 0;
const initialConnection = (): ConnectionInfo => INITIAL_CONNECTION;
const noMessages = (): readonly HeraldMessage[] => NO_MESSAGES;

/** useHerald returns the provider's client, or null before it exists (server, first render). */
export function useHerald(): HeraldClient | null {
  const store = useHeraldStore('useHerald');
  return useSyncExternalStore(store.client.subscribe, store.client.get, noClient);
}

/**
 * useConnectionState returns the client's last state change: `state` ('connecting',
 * 'connected', 'disconnected', 'closed'), and with it `reason`, `code`, `transport`,
 * `attempt` and `retryIn` when the client gave them. It is { state: 'connecting' } until the
 * client exists.
 */
export function useConnectionState(): ConnectionInfo {
  const store = useHeraldStore('useConnectionState');
  return useSyncExternalStore(store.connection.subscribe, store.connection.get, initialConnection);
}

/**
 * useCounts returns the user's { unread, unseen } over messages not archived, or null until
 * they were fetched. Fetched on every (re)connect and after a reset, replaced by each counts
 * push (another tab marked something), and counted up by each new stored message.
 */
export function useCounts(): Counts | null {
  const store = useHeraldStore('useCounts');
  return useSyncExternalStore(store.counts.subscribe, store.counts.get, noCounts);
}

/** useUnreadCount returns the number of unread messages, 0 until the counts were fetched. */
export function useUnreadCount(): number {
  const store = useHeraldStore('useUnreadCount');
  const unread = () => store.counts.get()?.unread ?? 0;
  return useSyncExternalStore(store.counts.subscribe, unread, zero);
}

export interface UseNotificationsOptions<T> {
  /** How many messages to return, newest first; default 50. */
  limit?: number;
  /**
   * Called once for each new message (never for a duplicate). The latest function is called,
   * so an inline arrow is fine. A returned promise delays the message's ack until it settles
   * (when the client acks after handlers, its default).
   */
  onMessage?: (m: HeraldMessage<T>) => void | Promise<void>;
}

export interface NotificationsResult<T> {
  /** Messages received since the provider mounted (or the last clear), newest first, no duplicates. */
  messages: readonly HeraldMessage<T>[];
  /** Empties the list, for every component of the provider. */
  clear: () => void;
}

/**
 * useNotifications returns the messages the provider received, newest first, de-duplicated by
 * offset (by id for unstored broadcasts). The list belongs to the provider, so a component
 * that mounts later sees what arrived before it; the provider keeps as many as the largest
 * limit of its mounted hooks asks for.
 */
export function useNotifications<T = unknown>(opts: UseNotificationsOptions<T> = {}): NotificationsResult<T> {
  const store = useHeraldStore('useNotifications');
  const limit = Math.max(1, Math.floor(opts.limit ?? DEFAULT_LIMIT));
  const onMessage = useRef(opts.onMessage);
  useEffect(() => {
    onMessage.current = opts.onMessage;
  });
  useEffect(() => store.retainLimit(limit), [store, limit]);
  useEffect(() => store.subscribeMessages((m) => onMessage.current?.(m as HeraldMessage<T>)), [store]);
  const all = useSyncExternalStore(store.messages.subscribe, store.messages.get, noMessages);
  return useMemo(
    () => ({
      messages: (all.length > limit ? all.slice(0, limit) : all) as readonly HeraldMessage<T>[],
      clear: store.clearMessages,
    }),
    [all, limit, store],
  );
}

export interface UseInboxOptions {
  /** 'all' (not archived; the default), 'unread' (neither read nor archived) or 'archived'. */
  filter?: InboxFilter;
  /** Page size; the server's default (50) when absent, at most 200. */
  limit?: number;
}

export interface InboxResult extends InboxSnapshot {
  /** Fetches the first page again. */
  refresh: () => Promise<void>;
  /** Fetches the next (older) page, if hasMore. */
  loadMore: () => Promise<void>;
  /** Marks ids read: at once here, then on the server. Never rejects (see error). */
  markRead: (ids: readonly string[]) => Promise<void>;
  /** Marks every message read. */
  markAllRead: () => Promise<void>;
  /** Marks ids seen (shown), without reading them. */
  markSeen: (ids: readonly string[]) => Promise<void>;
  /** Archives ids (archived implies read and seen). */
  archive: (ids: readonly string[]) => Promise<void>;
}

/**
 * useInbox returns the user's inbox for a filter, fetched when the client exists and kept in
 * sync: new messages are prepended, marks made in other tabs (counts pushes with ids) are
 * applied, a reset refetches. The mark functions change the list at once and refetch if the
 * server refuses.
 */
export function useInbox(opts: UseInboxOptions = {}): InboxResult {
  const store = useHeraldStore('useInbox');
  const [inbox] = useState(() => new InboxStore(store));
  const filter = opts.filter ?? 'all';
  const limit = opts.limit;
  useEffect(() => inbox.attach(filter, limit), [inbox, filter, limit]);
  const snap = useSyncExternalStore(inbox.subscribe, inbox.getSnapshot, inbox.getServerSnapshot);
  return useMemo(
    () => ({
      ...snap,
      refresh: inbox.refresh,
      loadMore: inbox.loadMore,
      markRead: inbox.markRead,
      markAllRead: inbox.markAllRead,
      markSeen: inbox.markSeen,
      archive: inbox.archive,
    }),
    [snap, inbox],
  );
}
