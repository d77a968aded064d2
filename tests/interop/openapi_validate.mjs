// Validates an OpenAPI document against the OpenAPI 3.1 schema (npm
// @seriousme/openapi-schema-validator, pinned in package-lock.json), the way a client
// generator or a gateway would read it. Prints every error; exits 1 on any.
// Usage: node openapi_validate.mjs DOCUMENT NODE_MODULES
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const [, , document, modules] = process.argv;
const require = createRequire(path.join(modules, 'noop.js'));
const { Validator } = require('@seriousme/openapi-schema-validator');
const result = await new Validator().validate(JSON.parse(readFileSync(document, 'utf8')));
if (!result.valid) {
  for (const e of result.errors) console.error(`error: ${e.instancePath || '/'}: ${e.message} ${JSON.stringify(e.params)}`);
  console.error(`${document} is not a valid OpenAPI document`);
  process.exit(1);
}
console.log(`${document}: valid OpenAPI ${result.specificationVersion ?? ''}`.trim());
