// The ESM entry point of the installed package: the same objects as require('jwtdeny').
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import jwtdeny, { createJwtdeny, JwtdenyError, keysFor } from 'jwtdeny';

const require = createRequire(import.meta.url);

test('import and require give one module', () => {
  const cjs = require('jwtdeny');
  assert.equal(jwtdeny, cjs);
  assert.equal(createJwtdeny, cjs.createJwtdeny);
  assert.equal(JwtdenyError, cjs.JwtdenyError);
  assert.equal(typeof keysFor, 'function');
});
