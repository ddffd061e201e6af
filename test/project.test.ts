import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { OUTPOST_VERSION } from '../shared/version.ts';

const root = new URL('..', import.meta.url);
const read = (p: string) => readFileSync(new URL(p, root), 'utf8');

test('package.json names both CLIs, pins the Node floor and has a lock file', () => {
  const pkg = JSON.parse(read('package.json')) as {
    version: string;
    type: string;
    engines: { node: string };
    bin: Record<string, string>;
  };
  assert.equal(pkg.type, 'module');
  assert.equal(pkg.engines.node, '>=20.17');
  assert.deepEqual(Object.keys(pkg.bin).sort(), ['outpost', 'outpost-agent']);
  assert.equal(pkg.version, OUTPOST_VERSION, 'shared/version.ts must follow package.json');
  assert.ok(existsSync(new URL('package-lock.json', root)));
});

test('.npmrc skips the onnxruntime CUDA download', () => {
  assert.match(read('.npmrc'), /^onnxruntime-node-install=skip$/m);
});

test('TypeScript is strict with unchecked index access', () => {
  const tsconfig = JSON.parse(read('tsconfig.json')) as { compilerOptions: Record<string, unknown> };
  assert.equal(tsconfig.compilerOptions.strict, true);
  assert.equal(tsconfig.compilerOptions.noUncheckedIndexedAccess, true);
});
