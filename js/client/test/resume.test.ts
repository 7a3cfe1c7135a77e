// Resume (?since=&epoch=), the stored resume point, de-duplication, reset,
// counts, and acks after the handlers ran.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { client, MemoryStorage, msg, tick, token } from './fakes.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
  vi.spyOn(Math, 'random').mockReturnValue(0.5);
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('resume URL', () => {
  it('every reconnect resumes from the last offset and epoch', async () => {
    const c = client();
    c.h.connect();
    await tick();
    expect(c.ws.last().url).toBe('wss://herald.test/ws?since=0'); // an empty inbox: from the start
    c.ws.last().open();
    c.ws.last().recv(msg(41));
    c.ws.last().recv(msg(42));
    c.ws.last().end(1006);
    await tick(250);
    expect(c.ws.last().url).toBe('wss://herald.test/ws?since=42&epoch=e1');
    c.h.close();
  });

  it('keeps the base URL’s path and scheme (http → ws)', async () => {
    const c = client({ url: 'http://localhost:8080/herald/' });
    c.h.connect();
    await tick();
    expect(c.ws.last().url).toBe('ws://localhost:8080/herald/ws?since=0');
    c.h.close();
  });

  it('a broadcast (no offset) does not move the resume point', async () => {
    const c = client();
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().recv(msg(3));
    c.ws.last().recv({ type: 'message', id: 'b1', ts: '2026-11-25T12:00:00Z', data: 'to everyone' });
    c.ws.last().end(1006);
    await tick(250);
    expect(c.ws.last().query.get('since')).toBe('3');
    expect(c.log.messages.map((m) => m.id)).toEqual(['m0003', 'b1']);
    c.h.close();
  });
});

describe('a first connect without a resume point', () => {
  /** Herald's inbox: the newest unarchived message has offset `all`, the newest archived one `archived` (0: none). */
  const inbox = (all: number, archived: number) => (path: string, _b: unknown, _i: RequestInit, url: URL) => {
    if (path !== '/v1/inbox') return { body: { unread: 0, unseen: 0 } };
    const o = url.searchParams.get('status') === 'archived' ? archived : all;
    expect(url.searchParams.get('limit')).toBe('1');
    const messages = o ? [{ ...msg(o), epoch: 'e7', seen: false, read: false, archived: url.searchParams.get('status') === 'archived' }] : [];
    return { body: { messages, next: o ? o : null } };
  };

  it.each([
    { all: 40, archived: 42, url: 'wss://herald.test/ws?since=42&epoch=e7' },
    { all: 42, archived: 40, url: 'wss://herald.test/ws?since=42&epoch=e7' },
    { all: 0, archived: 9, url: 'wss://herald.test/ws?since=9&epoch=e7' },
    { all: 0, archived: 0, url: 'wss://herald.test/ws?since=0' },
  ])('newest unarchived $all, archived $archived: $url', async ({ all, archived, url }) => {
    const c = client({}, inbox(all, archived));
    c.h.connect();
    await tick();
    expect(c.ws.last().url).toBe(url);
    c.h.close();
  });

  it('a drop before the first message loses nothing: the reconnect replays from there', async () => {
    const c = client({}, inbox(42, 0));
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().end(1012); // Herald restarts; 43 and 44 are sent meanwhile
    await tick(500);
    expect(c.ws.last().url).toBe('wss://herald.test/ws?since=42&epoch=e7');
    c.ws.last().open();
    c.ws.last().recv(msg(43, 'x', 'e7'));
    c.ws.last().recv(msg(44, 'x', 'e7'));
    expect(c.offsets()).toEqual([43, 44]);
    c.h.close();
  });

  it('asked once: later connects use the offsets seen', async () => {
    const c = client({}, inbox(42, 0));
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().recv(msg(43, 'x', 'e7'));
    c.ws.last().end(1006);
    await tick(250);
    expect(c.fetch.calls.filter((x) => x.path === '/v1/inbox')).toHaveLength(2);
    expect(c.ws.last().url).toBe('wss://herald.test/ws?since=43&epoch=e7');
    c.h.close();
  });

  it('if the inbox cannot be read, connects as before (at the stream’s end)', async () => {
    const c = client({}, (path) => (path === '/v1/inbox' ? { status: 503, body: { error: { code: 'unavailable', message: 'draining' } } } : { body: { unread: 0, unseen: 0 } }));
    c.h.connect();
    await tick();
    expect(c.ws.last().url).toBe('wss://herald.test/ws');
    expect(c.log.errors).toEqual([]);
    c.h.close();
  });

  it('not asked when storage has a resume point', async () => {
    const storage = new MemoryStorage();
    storage.setItem('herald:https://herald.test#u1', JSON.stringify({ offset: 7, epoch: 'e1' }));
    const c = client({ storage });
    c.h.connect();
    await tick();
    expect(c.fetch.calls.filter((x) => x.path === '/v1/inbox')).toHaveLength(0);
    c.h.close();
  });
});

describe('stored resume point', () => {
  it('survives a reload: kept in storage under url + user', async () => {
    const storage = new MemoryStorage();
    const a = client({ storage });
    a.h.connect();
    await tick();
    a.ws.last().open();
    a.ws.last().recv(msg(7));
    expect(JSON.parse(storage.getItem('herald:https://herald.test#u1')!)).toEqual({ offset: 7, epoch: 'e1' });
    a.h.close();

    const b = client({ storage }); // the page again
    b.h.connect();
    await tick();
    expect(b.ws.last().url).toBe('wss://herald.test/ws?since=7&epoch=e1');
    b.ws.last().open();
    b.ws.last().recv(msg(7)); // replayed overlap: dropped
    b.ws.last().recv(msg(8));
    expect(b.offsets()).toEqual([8]);
    b.h.close();
  });

  it('another user’s point is not used', async () => {
    const storage = new MemoryStorage();
    storage.setItem('herald:https://herald.test#u1', JSON.stringify({ offset: 7, epoch: 'e1' }));
    const c = client({ storage, getToken: async () => token(3600, 'u2') });
    c.h.connect();
    await tick();
    expect(c.ws.last().url).toBe('wss://herald.test/ws?since=0');
    c.h.close();
  });

  it('ignores a damaged entry and a storage that throws', async () => {
    const storage = new MemoryStorage();
    storage.setItem('herald:https://herald.test#u1', '{not json');
    const c = client({ storage });
    c.h.connect();
    await tick();
    expect(c.ws.last().url).toBe('wss://herald.test/ws?since=0');
    c.h.close();
    const broken = new MemoryStorage();
    broken.getItem = () => {
      throw new Error('SecurityError');
    };
    broken.setItem = broken.getItem;
    const d = client({ storage: broken });
    d.h.connect();
    await tick();
    d.ws.last().open();
    d.ws.last().recv(msg(1));
    expect(d.offsets()).toEqual([1]);
    d.h.close();
  });
});

describe('de-duplication across reconnects', () => {
  it('drops every message at or below the last offset seen in this epoch', async () => {
    const c = client();
    c.h.connect();
    await tick();
    c.ws.last().open();
    for (const o of [1, 2, 3]) c.ws.last().recv(msg(o));
    c.ws.last().end(4008, 'send queue full');
    await tick(250);
    c.ws.last().open();
    for (const o of [2, 3, 4, 5, 5]) c.ws.last().recv(msg(o)); // overlap, then new, then a repeat
    c.ws.last().end(1012);
    await tick(500);
    c.ws.last().open();
    for (const o of [4, 5, 6]) c.ws.last().recv(msg(o));
    expect(c.offsets()).toEqual([1, 2, 3, 4, 5, 6]);
    c.h.close();
  });

  it('a message of another epoch is not a duplicate', async () => {
    const c = client();
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().recv(msg(9, 'old', 'e1'));
    c.ws.last().recv(msg(1, 'new history', 'e2'));
    expect(c.offsets()).toEqual([9, 1]);
    c.h.close();
  });
});

describe('reset', () => {
  it('emits reset, moves the resume point, refetches counts; later messages flow', async () => {
    const c = client({}, (path) => ({ body: path === '/v1/inbox/counts' ? { unread: 4, unseen: 2 } : {} }));
    c.h.connect();
    await tick();
    c.ws.last().open();
    await tick();
    c.fetch.calls.length = 0;
    c.log.counts.length = 0;
    c.ws.last().recv({ type: 'reset', epoch: 'e2', offset: 30 });
    expect(c.log.resets).toEqual([{ reason: 'the resume point could not be honoured', epoch: 'e2', offset: 30 }]);
    await tick();
    expect(c.fetch.calls.map((x) => x.path)).toEqual(['/v1/inbox/counts']);
    expect(c.log.counts).toEqual([{ unread: 4, unseen: 2 }]);
    c.ws.last().recv(msg(30, 'x', 'e2')); // not after the reset offset
    c.ws.last().recv(msg(31, 'x', 'e2'));
    expect(c.offsets()).toEqual([31]);
    c.ws.last().end(1006);
    await tick(250);
    expect(c.ws.last().query.get('since')).toBe('31');
    expect(c.ws.last().query.get('epoch')).toBe('e2');
    c.h.close();
  });
});

describe('counts', () => {
  it('fetched on connect, pushed by the server, and +1 for each new stored message', async () => {
    const c = client({}, (path) => ({ body: path === '/v1/inbox' ? { messages: [], next: null } : { unread: 2, unseen: 1 } }));
    c.h.connect();
    await tick();
    c.ws.last().open();
    await tick();
    const counts = c.fetch.calls.filter((x) => x.path === '/v1/inbox/counts');
    expect(counts).toHaveLength(1);
    expect(counts[0]).toMatchObject({ method: 'GET' });
    expect(counts[0]!.auth).toMatch(/^Bearer ey/);
    c.ws.last().recv(msg(1));
    c.ws.last().recv({ type: 'message', id: 'b', ts: '2026-11-25T12:00:00Z', data: 'broadcast: not in the inbox' });
    c.ws.last().recv({ type: 'counts', unread: 0, unseen: 0, mark: 'read', ids: ['m0001'] });
    c.ws.last().recv(msg(2));
    expect(c.log.counts.map((x) => [x.unread, x.unseen])).toEqual([
      [2, 1],
      [3, 2],
      [0, 0],
      [1, 1],
    ]);
    expect(c.log.counts[2]).toMatchObject({ mark: 'read', ids: ['m0001'] });
    c.h.close();
  });
});

describe('acks', () => {
  it('after every handler’s promise settled, coalesced into one cumulative ack', async () => {
    const c = client();
    const pending: (() => void)[] = [];
    c.h.on('message', () => new Promise<void>((r) => pending.push(r)));
    c.h.connect();
    await tick();
    const ws = c.ws.last();
    ws.open();
    for (const o of [1, 2, 3, 4]) ws.recv(msg(o));
    await tick(1000);
    expect(ws.of('ack')).toEqual([]); // nothing processed yet
    pending[1]!(); // 2 done, 1 not: still nothing (acks are cumulative)
    await tick(1000);
    expect(ws.of('ack')).toEqual([]);
    pending[0]!(); // 1 and 2
    pending[2]!(); // and 3
    await tick(49);
    expect(ws.of('ack')).toEqual([]); // coalescing window
    await tick(1);
    expect(ws.of('ack')).toEqual([{ type: 'ack', offset: 3 }]);
    pending[3]!();
    await tick(50);
    expect(ws.of('ack')).toEqual([
      { type: 'ack', offset: 3 },
      { type: 'ack', offset: 4 },
    ]);
    c.h.close();
  });

  it('a replay burst is acknowledged once', async () => {
    const c = client();
    c.h.on('message', async () => {});
    c.h.connect();
    await tick();
    const ws = c.ws.last();
    ws.open();
    for (let o = 1; o <= 200; o++) ws.recv(msg(o));
    await tick(50);
    expect(ws.of('ack')).toEqual([{ type: 'ack', offset: 200 }]);
    c.h.close();
  });

  it('a steady stream is still acknowledged every window: new messages do not push the ack back', async () => {
    const c = client();
    c.h.connect();
    await tick();
    const ws = c.ws.last();
    ws.open();
    for (let o = 1; o <= 10; o++) {
      ws.recv(msg(o));
      await tick(20); // a message every 20 ms, forever
    }
    // Messages at 0, 20, …, 180 ms. A window opens at the first processed
    // message after the last ack and closes 50 ms later: 0→50 acks 3,
    // 60→110 acks 6, 120→170 acks 9, 180→230 acks 10.
    expect(ws.of('ack').map((a) => a.offset)).toEqual([3, 6, 9]);
    await tick(30);
    expect(ws.of('ack').map((a) => a.offset)).toEqual([3, 6, 9, 10]);
    c.h.close();
  });

  it('a rejected handler is reported and still counts as processed', async () => {
    const c = client();
    c.h.on('message', async () => {
      throw new Error('handler failed');
    });
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().recv(msg(1));
    await tick(50);
    expect(c.log.errors.map((e) => e.message)).toEqual(['handler failed']);
    expect(c.ws.last().of('ack')).toEqual([{ type: 'ack', offset: 1 }]);
    c.h.close();
  });

  it('never acks beyond what this connection was sent (after a reconnect)', async () => {
    const c = client();
    let release!: () => void;
    c.h.on('message', (m) => (m.offset === 2 ? new Promise<void>((r) => (release = r)) : undefined));
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().recv(msg(1));
    c.ws.last().recv(msg(2)); // slow handler
    await tick(50);
    expect(c.ws.last().of('ack')).toEqual([{ type: 'ack', offset: 1 }]);
    c.ws.last().end(1006);
    await tick(250);
    const ws = c.ws.last();
    ws.open(); // resumed since=2: offsets 1-2 were not sent to this one
    release();
    await tick(50);
    expect(ws.of('ack')).toEqual([]); // would be bad_ack
    ws.recv(msg(3));
    await tick(50);
    expect(ws.of('ack')).toEqual([{ type: 'ack', offset: 3 }]);
    c.h.close();
  });

  it('ackAfterHandler: false acks on receipt', async () => {
    const c = client({ ackAfterHandler: false });
    c.h.on('message', () => new Promise<void>(() => {})); // never settles
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().recv(msg(1));
    c.ws.last().recv(msg(2));
    await tick(50);
    expect(c.ws.last().of('ack')).toEqual([{ type: 'ack', offset: 2 }]);
    c.h.close();
  });

  it('close() sends the pending ack first', async () => {
    const c = client();
    c.h.connect();
    await tick();
    const ws = c.ws.last();
    ws.open();
    ws.recv(msg(1));
    await tick(); // handlers settled; the ack waits for its window
    c.h.close();
    expect(ws.of('ack')).toEqual([{ type: 'ack', offset: 1 }]);
  });
});
