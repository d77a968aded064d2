// Validates docs/asyncapi.yaml with the official AsyncAPI parser (npm @asyncapi/parser, pinned
// in package.json): the AsyncAPI 3 schema, its references (the payload schemas in
// docs/schemas/) and the parser's own rules. Fails on any error; prints warnings.
// Usage: node asyncapi_validate.mjs DOCUMENT NODE_MODULES
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const [, , document, modules] = process.argv;
const require = createRequire(path.join(modules, 'noop.js'));
const { Parser, fromFile } = require('@asyncapi/parser');
const parser = new Parser();
const { document: parsed, diagnostics } = await fromFile(parser, path.resolve(document)).parse();
let errors = 0;
for (const d of diagnostics) {
  const where = d.path.join('.');
  if (d.severity === 0) {
    errors++;
    console.error(`error: ${where}: ${d.message}`);
  } else {
    console.log(`note (${d.code}): ${where}: ${d.message}`);
  }
}
if (!parsed || errors > 0) {
  console.error(`${document} is not a valid AsyncAPI document (${errors} errors)`);
  process.exit(1);
}
const messages = parsed.allMessages().length;
const raw = readFileSync(document, 'utf8');
console.log(`${document}: valid AsyncAPI ${parsed.version()}, ${messages} messages, ${raw.length} bytes`);
