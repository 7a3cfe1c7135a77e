import { describe, expect, it } from 'vitest';
import { backoff, claims, endpoint, refreshIn } from '../src/util.js';
import { jwt } from './fakes.js';

describe('backoff (full jitter)', () => {
  it('is uniformly random in [0, min(cap, base·2^attempt))', () => {
    for (const [attempt, window] of [
      [0, 500],
      [1, 1000],
      [2, 2000],
      [5, 16000],
      [6, 30000], // 32000 capped
      [60, 30000],
      [5000, 30000], // 2^5000 is Infinity: still the cap
    ] as const) {
      expect(backoff(attempt, 500, 30000, () => 0)).toBe(0);
      expect(backoff(attempt, 500, 30000, () => 0.5)).toBe(window / 2);
      const top = backoff(attempt, 500, 30000, () => 0.999999);
      expect(top).toBeLessThan(window);
      expect(top).toBeGreaterThan(window * 0.999);
    }
  });
  it('stays within bounds with Math.random', () => {
    for (let a = 0; a < 20; a++)
      for (let i = 0; i < 200; i++) {
        const d = backoff(a, 500, 30000);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(Math.min(30000, 500 * 2 ** a));
      }
  });
});

describe('claims', () => {
  it.each([
    ['string sub', { sub: 'u1', exp: 1700000000 }, { sub: 'u1', exp: 1700000000 }],
    ['integer sub is its digits', { sub: 42, exp: 1.5 }, { sub: '42', exp: 1.5 }],
    ['no exp', { sub: 'a' }, { sub: 'a', exp: undefined }],
    ['exp not a number', { sub: 'a', exp: '1' }, { sub: 'a', exp: undefined }],
    ['non-ASCII sub is decoded as UTF-8', { sub: 'Zoë ✓', exp: 1 }, { sub: 'Zoë ✓', exp: 1 }],
  ])('%s', (_, c, want) => {
    expect(claims(jwt(c))).toEqual(want);
  });
  it.each(['', 'not a jwt', 'a.b.c', 'a.!!!.c'])('garbage %j gives {}', (t) => {
    expect(claims(t)).toEqual({});
  });
});

describe('refreshIn', () => {
  const now = 1_000_000;
  it.each([
    // remaining life → delay: 80% of it or 30 s before expiry, whichever first; at least 5 s.
    ['1 hour', 3_600_000, 2_880_000],
    ['10 minutes', 600_000, 480_000],
    ['150 s (both rules agree)', 150_000, 120_000],
    ['60 s', 60_000, 30_000],
    ['20 s: 30 s before already passed', 20_000, 5_000],
    ['already expired', -10_000, 5_000],
  ])('%s', (_, left, want) => {
    expect(refreshIn(now + left, now)).toBe(want);
  });
});

describe('endpoint', () => {
  it.each([
    ['https://h.example', '/ws', {}, true, 'wss://h.example/ws'],
    ['http://localhost:8080/', '/ws', { since: 7, epoch: 'e1' }, true, 'ws://localhost:8080/ws?since=7&epoch=e1'],
    ['https://h.example/herald/', '/sse', { token: 'a.b.c', since: 0, epoch: 'e' }, false, 'https://h.example/herald/sse?token=a.b.c&since=0&epoch=e'],
    ['https://h.example', '/v1/inbox', { status: 'unread', before: undefined, limit: 20 }, false, 'https://h.example/v1/inbox?status=unread&limit=20'],
    ['https://h.example', '/v1/inbox', { epoch: '' }, false, 'https://h.example/v1/inbox'],
  ] as const)('%s %s', (base, path, q, ws, want) => {
    expect(endpoint(base, path, q, ws)).toBe(want);
  });
});
