// read_arrow.mjs reads an Arrow IPC file with Apache Arrow's JavaScript implementation and
// prints what it saw as one JSON document, for integration/arrowjs_test.go to compare with
// what the Go side exported. It is an independent reader: nothing here shares code with Strata.
//
// Usage: node read_arrow.mjs FILE.arrow
// The apache-arrow package is loaded from $STRATA_ARROWJS_DIR/node_modules (make tools puts
// it in .tools/node).
//
// Output: {"rows": N, "batches": B, "fields": [{"name", "type", "nullable"}...],
//          "data": [{column: value}...]}
// Values are made JSON-safe: 64-bit integers (BigInt) and timestamps become decimal strings,
// binary becomes base64, a map becomes a list of [key, value] pairs in stored order.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const file = process.argv[2];
const dir = process.env.STRATA_ARROWJS_DIR;
if (!file || !dir) {
  console.error('usage: STRATA_ARROWJS_DIR=DIR node read_arrow.mjs FILE.arrow');
  process.exit(2);
}
const entry = join(dir, 'node_modules', 'apache-arrow', 'Arrow.node.mjs');
const arrow = await import(pathToFileURL(entry).href);

function plain(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return Number.isInteger(v) ? v.toString() : v;
  if (typeof v === 'string') return v;
  if (v instanceof Date) return v.getTime().toString();
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
  if (typeof v[Symbol.iterator] === 'function') {
    // A map row iterates as [key, value] entries; a list as values.
    return Array.from(v, (e) => (Array.isArray(e) ? e.map(plain) : plain(e)));
  }
  return String(v);
}

const table = arrow.tableFromIPC(readFileSync(file));
const fields = table.schema.fields.map((f) => ({
  name: f.name,
  type: String(f.type),
  typeId: arrow.Type[f.typeId],
  nullable: f.nullable,
}));
const data = [];
for (let i = 0; i < table.numRows; i++) {
  const row = table.get(i);
  const out = {};
  for (const f of table.schema.fields) out[f.name] = plain(row[f.name]);
  data.push(out);
}
process.stdout.write(JSON.stringify({ rows: table.numRows, batches: table.batches.length, fields, data }));
process.stdout.write('\n');
