export { Herald } from './herald.js';
export { HeraldError } from './inbox.js';
export type * from './types.js';
export type * from './protocol.js';
