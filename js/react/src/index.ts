'use client';
// @herald/react: React bindings for @herald/client. The directive above makes this entry a
// client module for React Server Components (Next.js App Router); importing it touches no
// window or document, so server renders of trees that use it work too.
export { HeraldProvider, type HeraldProviderProps } from './provider.js';
export {
  useHerald,
  useConnectionState,
  useCounts,
  useUnreadCount,
  useNotifications,
  useInbox,
  type UseNotificationsOptions,
  type NotificationsResult,
  type UseInboxOptions,
  type InboxResult,
} from './hooks.js';
export type { InboxSnapshot } from './inbox.js';
export type { ConnectionInfo } from './store.js';
export type {
  Counts,
  CountsEvent,
  HeraldClient,
  HeraldMessage,
  HeraldOptions,
  InboxFilter,
  InboxItem,
  Mark,
  ResetEvent,
  State,
  StateChange,
  Transport,
} from './types.js';
