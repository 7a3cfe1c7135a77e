// The protocol types are hand-written (src/protocol.ts); docs/protocol.schema.json
// is the contract. The fakes validate every message in every test against it
// (test/schema.ts); this file shows that validation has teeth and covers each
// message type the client consumes or produces.
import { describe, expect, it } from 'vitest';
import type { AckRequest, ClientMessage, ServerMessage, SSEData } from '../src/protocol.js';
import { invalid } from './schema.js';

const ts = '2026-11-25T12:00:00.123Z';

// Typed as the client's own types: a type that lost a field the schema
// requires, or gained one it forbids, fails here at compile time or below.
const server: ServerMessage[] = [
  { type: 'message', id: '019ab2c3d4e5f60718293a4b5c', offset: 17, epoch: '3f9c0d1e2a4b5c6d', ts, data: { message: 'hi' } },
  { type: 'message', id: 'b1', ts, data: null }, // a broadcast: no offset, no epoch
  { type: 'message', id: 'n1', ts, data: 'not JSON, held in a string' },
  { type: 'ping' },
  { type: 'pong' },
  { type: 'reset', epoch: 'e2', offset: 0 },
  { type: 'counts', unread: 2, unseen: 0 },
  { type: 'counts', unread: 2, unseen: 0, mark: 'read', ids: ['019ab2c3d4e5f60718293a4b5c'] },
  { type: 'reconnect' },
  { type: 'refreshed', expires: '2026-11-25T13:00:30Z' },
  { type: 'error', code: 'bad_ack', message: 'offset 9 was never sent to this connection' },
];
const client: ClientMessage[] = [
  { type: 'ping' },
  { type: 'pong' },
  { type: 'ack', offset: 17 },
  { type: 'resume', since: 17, epoch: '3f9c0d1e2a4b5c6d' },
  { type: 'resume', since: 0 },
  { type: 'refresh', token: 'eyJ.eyJ.sig' },
];
const sse: SSEData[] = [
  { type: 'connected', connection_id: '8Zr0Kq3vX1bQm2Lp', epoch: '3f9c0d1e2a4b5c6d' },
  { type: 'message', id: 'm', offset: 1, epoch: 'e', ts, data: 1 },
  { type: 'reset', epoch: 'e', offset: 3 },
  { type: 'counts', unread: 0, unseen: 0 },
  { type: 'reconnect' },
  { type: 'close', code: 4003, reason: 'disconnected by the server' },
];
const ack: AckRequest = { connection_id: '8Zr0Kq3vX1bQm2Lp', offset: 17 };

describe('protocol types agree with docs/protocol.schema.json', () => {
  it.each(server.map((m) => [m.type, m]))('server → client %s', (_, m) => {
    expect(invalid('#/$defs/ServerMessage', m)).toBeNull();
  });
  it.each(client.map((m) => [m.type, m]))('client → server %s', (_, m) => {
    expect(invalid('#/$defs/ClientMessage', m)).toBeNull();
  });
  it.each(sse.map((m) => [m.type, m]))('SSE event %s', (_, m) => {
    expect(invalid('#/$defs/sse/' + m.type, m)).toBeNull();
    expect(invalid('#/$defs/SSEEvent', { event: m.type, data: m })).toBeNull();
  });
  it('POST /v1/ack body', () => {
    expect(invalid('#/$defs/AckRequest', ack)).toBeNull();
  });
});

describe('the validation the fakes apply has teeth', () => {
  it.each([
    ['#/$defs/ServerMessage', { type: 'message', id: 'x', offset: 1, ts, data: 1 }, 'offset without epoch'],
    ['#/$defs/ServerMessage', { type: 'message', id: 'x', ts: 'yesterday', data: 1 }, 'ts not RFC 3339'],
    ['#/$defs/ServerMessage', { type: 'counts', unread: 1 }, 'counts without unseen'],
    ['#/$defs/ServerMessage', { type: 'ping', extra: 1 }, 'a field the server does not send'],
    ['#/$defs/ServerMessage', { type: 'hello' }, 'an unknown type'],
    ['#/$defs/ClientMessage', { type: 'ack', offset: '7' }, 'offset as a string'],
    ['#/$defs/ClientMessage', { type: 'ack', offset: 7, epoch: 'e' }, 'a misspelt extra member'],
    ['#/$defs/ClientMessage', { type: 'refresh', token: '' }, 'an empty token'],
    ['#/$defs/AckRequest', { connection_id: 'short', offset: 1 }, 'a connection id that is not 16 base64url characters'],
    ['#/$defs/SSEEvent', { event: 'close', data: { type: 'close', code: 4999, reason: '' } }, 'a close code not in the table'],
  ] as [string, unknown, string][])('%s rejects %j (%s)', (pointer, value) => {
    expect(invalid(pointer, value)).not.toBeNull();
  });
});
