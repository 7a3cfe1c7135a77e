// The inbox helpers over /v1/inbox… and HeraldError.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HeraldError } from '../src/index.js';
import { client, token } from './fakes.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
});
afterEach(() => {
  vi.useRealTimers();
});

const item = (offset: number, read = false) => ({
  type: 'message',
  id: 'm' + offset,
  offset,
  epoch: 'e1',
  ts: '2026-11-25T12:00:00Z',
  data: { n: offset },
  seen: read,
  read,
  archived: false,
});

describe('inbox', () => {
  it('list maps status, before and limit; returns messages and next', async () => {
    const c = client({}, () => ({ body: { messages: [item(9), item(7, true)], next: 7 } }));
    const page = await c.h.inbox.list({ status: 'unread', before: 10, limit: 2 });
    expect(page).toEqual({ messages: [item(9), item(7, true)], next: 7 });
    const call = c.fetch.calls[0]!;
    expect(call.method).toBe('GET');
    expect(call.url.href).toBe('https://herald.test/v1/inbox?status=unread&before=10&limit=2');
    expect(call.auth).toBe('Bearer ' + (await c.getToken.mock.results[0]!.value));
  });

  it('list() without a query asks for the defaults', async () => {
    const c = client({}, () => ({ body: { messages: [], next: null } }));
    expect(await c.h.inbox.list()).toEqual({ messages: [], next: null });
    expect(c.fetch.calls[0]!.url.href).toBe('https://herald.test/v1/inbox');
  });

  it.each([
    ['markSeen', ['a', 'b'], '/v1/inbox/seen', { ids: ['a', 'b'] }],
    ['markAllSeen', undefined, '/v1/inbox/seen', { all: true }],
    ['markRead', ['a'], '/v1/inbox/read', { ids: ['a'] }],
    ['markAllRead', undefined, '/v1/inbox/read', { all: true }],
    ['archive', ['a'], '/v1/inbox/archive', { ids: ['a'] }],
  ] as const)('%s posts to %s', async (method, ids, path, body) => {
    const reply = { changed: ['a'], unread: 1, unseen: 0 };
    const c = client({}, () => ({ body: reply }));
    expect(await (c.h.inbox as any)[method](ids)).toEqual(reply);
    expect(c.fetch.calls[0]).toMatchObject({ method: 'POST', path, body });
  });

  it('counts', async () => {
    const c = client({}, () => ({ body: { unread: 5, unseen: 2 } }));
    expect(await c.h.inbox.counts()).toEqual({ unread: 5, unseen: 2 });
    expect(c.fetch.calls[0]!.path).toBe('/v1/inbox/counts');
  });

  it('reuses a token that is still fresh; asks for a new one when it is about to expire', async () => {
    const getToken = vi.fn(async () => token(60));
    const c = client({ getToken }, () => ({ body: { unread: 0, unseen: 0 } }));
    await c.h.inbox.counts();
    await c.h.inbox.counts();
    expect(getToken).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(31_000); // 29 s left: under 30 s
    await c.h.inbox.counts();
    expect(getToken).toHaveBeenCalledTimes(2);
  });

  it('a short-lived token stays fresh for most of its life, not for none of it', async () => {
    const getToken = vi.fn(async () => token(20)); // shorter than the 30 s margin
    const c = client({ getToken }, () => ({ body: { unread: 0, unseen: 0 } }));
    await c.h.inbox.counts();
    vi.advanceTimersByTime(9_000); // 11 s left: more than half of 20 s
    await c.h.inbox.counts();
    expect(getToken).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(2_000); // 9 s left: under half
    await c.h.inbox.counts();
    expect(getToken).toHaveBeenCalledTimes(2);
  });

  it('a 401 gets one retry with a fresh token', async () => {
    let n = 0;
    const c = client({}, () => (n++ === 0 ? { status: 401, body: { error: { code: 'unauthorized', message: 'token expired' } } } : { body: { unread: 1, unseen: 1 } }));
    expect(await c.h.inbox.counts()).toEqual({ unread: 1, unseen: 1 });
    expect(c.getToken).toHaveBeenCalledTimes(2);
    expect(c.fetch.calls).toHaveLength(2);
  });

  it.each([
    [401, { error: { code: 'unauthorized', message: 'token signature invalid' } }, 'unauthorized', 'token signature invalid'],
    [400, { error: { code: 'invalid_request', message: 'at most 1000 ids at once' } }, 'invalid_request', 'at most 1000 ids at once'],
    [403, { error: { code: 'forbidden', message: 'origin not allowed' } }, 'forbidden', 'origin not allowed'],
    [502, 'Bad Gateway (not JSON)', 'http_502', ''],
  ])('status %i becomes a HeraldError with the server’s code', async (status, body, code, message) => {
    const c = client({}, () => ({ status, body }));
    const err = await c.h.inbox.markRead(['a']).catch((e) => e);
    expect(err).toBeInstanceOf(HeraldError);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ name: 'HeraldError', code, status });
    if (message) expect(err.message).toBe(message);
  });

  it('a network failure is HeraldError network', async () => {
    const c = client({
      fetch: (async () => {
        throw new TypeError('Failed to fetch');
      }) as unknown as typeof fetch,
    });
    await expect(c.h.inbox.counts()).rejects.toMatchObject({ name: 'HeraldError', code: 'network', message: 'Failed to fetch', status: 0 });
  });

  it('calls a fetch given as an option as a plain function (a method call would be an Illegal invocation in browsers)', async () => {
    const f = vi.fn(function (this: unknown) {
      expect(this).toBeUndefined();
      return Promise.resolve(new Response('{"unread":0,"unseen":0}'));
    });
    const c = client({ fetch: f as unknown as typeof fetch });
    await c.h.inbox.counts();
    expect(f).toHaveBeenCalledTimes(1);
  });
});
