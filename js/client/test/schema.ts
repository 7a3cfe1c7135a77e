// docs/protocol.schema.json, compiled once. The fakes check every message a
// test feeds the client (server → client) and every message the client sends
// (client → server, POST /v1/ack bodies) against it, so the hand-written
// types in src/protocol.ts and the tests' fixtures cannot drift from the
// server's contract without a test failing.
import { Ajv2020 } from 'ajv/dist/2020.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const schemaPath = fileURLToPath(new URL('../../../docs/protocol.schema.json', import.meta.url));
const schema = JSON.parse(readFileSync(schemaPath, 'utf8'));

// strict: false because $defs/sse is a map of schemas keyed by event name,
// which strict mode would read as unknown keywords.
const ajv = new Ajv2020({ strict: false, allErrors: true });
ajv.addFormat('date-time', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i);
ajv.addSchema(schema);

/** Why `value` is not valid against the schema at `pointer` (e.g. "#/$defs/ServerMessage"), or null. */
export function invalid(pointer: string, value: unknown): string | null {
  const v = ajv.getSchema(schema.$id + pointer);
  if (!v) throw new Error('no schema at ' + pointer);
  return v(value) ? null : ajv.errorsText(v.errors) + ' in ' + JSON.stringify(value);
}

export function check(pointer: string, value: unknown) {
  const why = invalid(pointer, value);
  if (why) throw new Error(`not a valid ${pointer}: ${why}`);
}
