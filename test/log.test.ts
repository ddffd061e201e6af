import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger, REDACT_PATHS } from '../agent/log.ts';
import { createLogger as createCloudLogger } from '../cloud-sync/log.ts';
import { createJsonLogger } from '../shared/log.ts';

function capture(level = 'trace') {
  const lines: string[] = [];
  const log = createLogger(level, { write: (s: string) => lines.push(s) });
  const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { log, lines, parsed };
}

test('lines are one JSON object each, numeric level, ISO time, pid, msg', () => {
  const { log, lines, parsed } = capture();
  log.info('plain');
  log.warn({ model: 'mlp', n: 3 }, 'with fields');
  log.child({ component: 'http' }).error({ code: 'E' }, 'from a child');
  assert.equal(lines.length, 3);
  for (const l of lines) assert.ok(l.endsWith('}\n') && !l.slice(0, -1).includes('\n'));
  const [a, b, c] = parsed();
  assert.deepEqual(Object.keys(a ?? {}), ['level', 'time', 'pid', 'msg']);
  assert.equal(a?.['level'], 30);
  assert.equal(a?.['pid'], process.pid);
  assert.equal(new Date(String(a?.['time'])).toISOString(), a?.['time']);
  assert.deepEqual(
    { ...b, time: 0 },
    { level: 40, time: 0, pid: process.pid, model: 'mlp', n: 3, msg: 'with fields' },
  );
  assert.deepEqual(
    { ...c, time: 0 },
    {
      level: 50,
      time: 0,
      pid: process.pid,
      component: 'http',
      code: 'E',
      msg: 'from a child',
    },
  );
});

test('the level filters, is shared by children made before and after a change, and rejects unknown names', () => {
  const { log, parsed } = capture('warn');
  const early = log.child({ component: 'a' });
  log.info('dropped');
  early.debug('dropped');
  early.warn('kept');
  log.level = 'debug';
  early.debug('kept after the change');
  log.child({ component: 'b' }).trace('below debug: dropped');
  log.level = 'silent';
  early.fatal('silent drops everything');
  assert.deepEqual(
    parsed().map((l) => [l['level'], l['msg']]),
    [
      [40, 'kept'],
      [20, 'kept after the change'],
    ],
  );
  assert.equal(log.level, 'silent');
  assert.throws(() => {
    log.level = 'verbose';
  }, /unknown log level "verbose"/);
  assert.throws(() => createJsonLogger({ level: 'loud' }), /unknown log level/);
});

test('secrets are redacted in fields, nested fields, bindings and errors, without changing the caller’s objects', () => {
  const { log, parsed } = capture();
  const config = { http: { token: 'sekrit-1', port: 8471 }, uplink: { password: 'pw-1', url: 'mqtt://x' } };
  const headers = { authorization: 'Bearer sekrit-2', host: 'h' };
  const err = Object.assign(new Error('refused'), { token: 'sekrit-3' });
  log
    .child({ token: 'sekrit-4', component: 'sync' })
    .warn({ config, headers, client: { password: 'pw-2' }, err }, 'm');
  const [line] = parsed();
  const text = JSON.stringify(line);
  for (const secret of ['sekrit-1', 'sekrit-2', 'sekrit-3', 'sekrit-4', 'pw-1', 'pw-2'])
    assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
  assert.deepEqual(line?.['config'], {
    http: { token: '[redacted]', port: 8471 },
    uplink: { password: '[redacted]', url: 'mqtt://x' },
  });
  assert.deepEqual(line?.['headers'], { authorization: '[redacted]', host: 'h' });
  assert.equal(line?.['component'], 'sync');
  assert.equal((line?.['err'] as Record<string, unknown> | undefined)?.['message'], 'refused');
  assert.equal(config.http.token, 'sekrit-1');
  assert.equal(headers.authorization, 'Bearer sekrit-2');
  assert.equal(err.token, 'sekrit-3');
  assert.ok(REDACT_PATHS.includes('config.uplink.password'));

  const cloud: string[] = [];
  createCloudLogger('info', { write: (s: string) => cloud.push(s) }).info(
    { req: { headers: { authorization: 'Bearer sekrit-5' } }, config: { operatorToken: 'sekrit-6' } },
    'cp',
  );
  assert.ok(!/sekrit-5|sekrit-6/.test(cloud.join('')), cloud.join(''));
  assert.equal((JSON.parse(cloud[0] ?? '{}') as Record<string, unknown>)['service'], 'outpost-control-plane');
});

test('errors are written with type, message, stack, own fields and cause; cycles and BigInt do not throw', () => {
  const { log, parsed } = capture();
  class ConfigError extends Error {}
  const cause = new TypeError('inner');
  const err = Object.assign(new ConfigError('outer', { cause }), { code: 'CONFIG_INVALID' });
  log.error({ err }, 'failed');
  log.error(new RangeError('bare error'));
  const loop: Record<string, unknown> = { name: 'loop', n: 10n };
  loop['self'] = loop;
  const shared = { x: 1 };
  log.info({ loop, pair: [shared, shared] }, 'odd values');
  const [a, b, c] = parsed();
  const e = a?.['err'] as Record<string, unknown>;
  assert.equal(e['type'], 'ConfigError');
  assert.equal(e['message'], 'outer');
  assert.equal(e['code'], 'CONFIG_INVALID');
  assert.match(String(e['stack']), /outer\n\s+at /);
  assert.deepEqual(
    { ...(e['cause'] as Record<string, unknown>), stack: undefined },
    { type: 'TypeError', message: 'inner', stack: undefined },
  );
  assert.equal(b?.['msg'], 'bare error');
  assert.equal((b?.['err'] as Record<string, unknown> | undefined)?.['type'], 'RangeError');
  assert.deepEqual(c?.['loop'], { name: 'loop', n: '10', self: '[Circular]' });
  assert.deepEqual(c?.['pair'], [{ x: 1 }, { x: 1 }]);
});
