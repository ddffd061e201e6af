import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { closedLoop, parseResponse, sendSequentially } from './bench/lib/load.ts';

test('parseResponse frames content-length and chunked bodies, and waits for incomplete ones', () => {
  const fixed = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404 x');
  assert.deepEqual(parseResponse(fixed), { status: 200, end: fixed.indexOf('HTTP/1.1 404'), close: false });
  assert.equal(parseResponse(fixed.subarray(0, fixed.indexOf('hello') + 3)), undefined);
  const chunked = Buffer.from(
    'HTTP/1.1 429 Too Many\r\ntransfer-encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
  );
  assert.deepEqual(parseResponse(chunked), { status: 429, end: chunked.length, close: true });
  for (let cut = 1; cut < chunked.length; cut++)
    assert.equal(
      parseResponse(chunked.subarray(0, cut)),
      undefined,
      `complete at ${cut} of ${chunked.length}?`,
    );
  assert.throws(() => parseResponse(Buffer.from('SSH-2.0-x\r\n\r\n')), /not an HTTP response/);
});

test('closedLoop counts what a real server answered: bodies, chunked replies, statuses and closed connections', async () => {
  let served = 0;
  const bodies: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      served++;
      bodies.push(Buffer.concat(chunks).toString());
      if (served % 7 === 0) {
        res.writeHead(503, { connection: 'close', 'content-length': 2 });
        res.end('no');
      } else if (served % 2 === 0) {
        res.write('chunk one;');
        res.end('chunk two');
      } else {
        res.end(JSON.stringify({ ok: true }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  try {
    const body = Buffer.from('{"inputs":[]}');
    const result = await closedLoop({ port, path: '/x', method: 'POST', body }, 4, 300);
    assert.equal(result.completed + result.errors, served, 'every answer counted once');
    assert.ok(result.completed > 0);
    assert.equal(result.statuses['503'], Math.floor(served / 7));
    assert.ok(bodies.every((b) => b === '{"inputs":[]}'));
    await sendSequentially({ port, path: '/x' }, 3).catch(() => undefined);
    server.closeAllConnections();
    const refused = await closedLoop({ port: 1, path: '/' }, 1, 50);
    assert.equal(refused.completed, 0);
    assert.ok((refused.statuses['ECONNREFUSED'] ?? 0) > 0, JSON.stringify(refused.statuses));
  } finally {
    server.close();
  }
});
