/**
 * Herald's client protocols as TypeScript types, written by hand from
 * docs/protocol.schema.json (the names follow its $defs). Hand-written
 * rather than generated because a generator turns oneOf/const into
 * awkward unions and brings a large dependency tree for ~60 lines;
 * test/schema.test.ts keeps these honest by validating every message the
 * client produces, and every fixture it is tested against, with the schema
 * itself.
 */

/** A position in a user's stream: stored messages count from 1. */
export type Offset = number;

/** A notification (#/$defs/Message). `offset` and `epoch` come together, and are both absent for messages that are not stored (broadcasts, POST /@connections/{id}). */
export interface HeraldMessage<T = unknown> {
  id: string;
  offset?: Offset;
  epoch?: string;
  /** When Herald accepted the message (RFC 3339). */
  ts: string;
  data: T;
}

export interface MessageMsg<T = unknown> extends HeraldMessage<T> {
  type: 'message';
}
export interface PingMsg {
  type: 'ping';
}
export interface PongMsg {
  type: 'pong';
}
export interface ResetMsg {
  type: 'reset';
  epoch: string;
  offset: Offset;
}
export type Mark = 'seen' | 'read' | 'archived';
export interface CountsMsg {
  type: 'counts';
  unread: number;
  unseen: number;
  mark?: Mark;
  ids?: string[];
}
export interface ReconnectMsg {
  type: 'reconnect';
}
export interface RefreshedMsg {
  type: 'refreshed';
  expires: string;
}
/** Codes are stable; treat an unknown one like any other error. */
export type ProtocolErrorCode = 'unknown_type' | 'bad_resume' | 'invalid_token' | 'bad_ack';
export interface ErrorMsg {
  type: 'error';
  code: ProtocolErrorCode | (string & {});
  message: string;
}

/** #/$defs/ServerMessage: herald.v1, server to client. */
export type ServerMessage =
  | MessageMsg
  | PingMsg
  | PongMsg
  | ResetMsg
  | CountsMsg
  | ReconnectMsg
  | RefreshedMsg
  | ErrorMsg;

export interface AckMsg {
  type: 'ack';
  offset: Offset;
}
export interface ResumeMsg {
  type: 'resume';
  since: Offset;
  epoch?: string;
}
export interface RefreshMsg {
  type: 'refresh';
  token: string;
}

/** #/$defs/ClientMessage: herald.v1, client to server. */
export type ClientMessage = PingMsg | PongMsg | AckMsg | ResumeMsg | RefreshMsg;

/** #/$defs/Connected: the first event of every GET /sse stream. */
export interface ConnectedMsg {
  type: 'connected';
  connection_id: string;
  epoch: string;
}
/** #/$defs/Close: sent just before the server ends a GET /sse stream. */
export interface CloseMsg {
  type: 'close';
  code: number;
  reason: string;
}

/** The data of any GET /sse event (#/$defs/sse/<event>); `type` equals the event name. */
export type SSEData = MessageMsg | ConnectedMsg | ResetMsg | CountsMsg | ReconnectMsg | CloseMsg;

/** #/$defs/AckRequest: the body of POST /v1/ack. */
export interface AckRequest {
  connection_id: string;
  offset: Offset;
}
