import type { Herald, InboxQuery } from '@herald/client';
export type {
  Counts,
  CountsEvent,
  Herald,
  HeraldMessage,
  HeraldOptions,
  InboxItem,
  Mark,
  ResetEvent,
  State,
  StateChange,
  Transport,
} from '@herald/client';

/** Which part of the inbox a list shows: 'all' (not archived), 'unread' (neither read nor archived), 'archived'. */
export type InboxFilter = NonNullable<InboxQuery['status']>;

/**
 * The part of a Herald client the hooks use. A real Herald satisfies it; tests pass a fake
 * through the provider's createClient or client prop.
 */
export type HeraldClient = Pick<Herald, 'connect' | 'close' | 'on' | 'inbox' | 'state'>;
