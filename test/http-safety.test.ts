import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { loadConfig } from '../agent/config.ts';
import { Router } from '../agent/http/router.ts';
import { HttpServer, sendJson } from '../agent/http/server.ts';
import { isOutpostError } from '../shared/errors.ts';
import { createJsonLogger } from '../shared/log.ts';
import { apiAgent, baseUrl } from './helpers/api.ts';
import { tempDir } from './helpers/tmp.ts';

const TOKEN = 'a-test-token-of-32-characters-xx';

test('the default binds loopback; any other address without a token refuses to start', async () => {
  const config = loadConfig({ overrides: { dataDir: tempDir('cfg') } });
  assert.equal(config.http.host, '127.0.0.1');
  assert.throws(
    () => loadConfig({ overrides: { dataDir: tempDir('cfg'), http: { host: '0.0.0.0' } } }),
    (err: unknown) => isOutpostError(err, 'CONFIG_INVALID') && /http\.token/.test(err.message),
  );
  assert.throws(
    () => loadConfig({ env: { OUTPOST_HTTP__HOST: '192.168.1.10' }, overrides: { dataDir: tempDir('cfg') } }),
    /http\.token: required/,
  );
  // The server itself refuses too, whatever built it.
  const server = new HttpServer(new Router(), {
    host: '0.0.0.0',
    port: 0,
    bodyLimitBytes: 1024,
    headersTimeoutMs: 1000,
    requestTimeoutMs: 1000,
    keepAliveTimeoutMs: 1000,
    log: createJsonLogger({ level: 'silent' }),
  });
  await assert.rejects(server.start(), /without a bearer token/);
});

test('bound beyond loopback with a token: 401 without or with a wrong token, liveness stays open', async () => {
  const agent = await apiAgent([], { http: { host: '0.0.0.0', port: 0, token: TOKEN } });
  try {
    const url = baseUrl(agent);
    const none = await fetch(`${url}/v2`);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer');
    assert.deepEqual(await none.json(), { error: 'missing or wrong bearer token' });
    const wrong = await fetch(`${url}/v2`, {
      headers: { authorization: `Bearer ${TOKEN.replace('a', 'b')}` },
    });
    assert.equal(wrong.status, 401);
    const metricsNoToken = await fetch(`${url}/metrics`);
    assert.equal(metricsNoToken.status, 401);
    const right = await fetch(`${url}/v2`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(right.status, 200);
    assert.equal((await fetch(`${url}/v2/health/live`)).status, 200);
  } finally {
    await agent.stop();
  }
});

/** A server with tight limits and one echo route, for the slow-client and body-limit checks. */
async function tightServer(): Promise<{ server: HttpServer; port: number }> {
  const router = new Router();
  router.post('/echo', async (ctx) => sendJson(ctx.res, 200, { bytes: (await ctx.body()).length }));
  router.get('/ping', (ctx) => sendJson(ctx.res, 200, { ok: true }));
  const server = new HttpServer(router, {
    host: '127.0.0.1',
    port: 0,
    bodyLimitBytes: 2048,
    headersTimeoutMs: 300,
    requestTimeoutMs: 600,
    keepAliveTimeoutMs: 300,
    log: createJsonLogger({ level: 'silent' }),
  });
  return { server, port: await server.start() };
}

function closedWithin(socket: Socket, ms: number): Promise<{ closedAfterMs: number; data: string }> {
  const started = Date.now();
  let data = '';
  socket.on('data', (d) => {
    data += d.toString();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`socket still open after ${ms} ms`));
    }, ms);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ closedAfterMs: Date.now() - started, data });
    });
    socket.on('error', () => {});
  });
}

test('body size limit answers 413, declared or streamed', async () => {
  const { server, port } = await tightServer();
  try {
    const ok = await fetch(`http://127.0.0.1:${port}/echo`, { method: 'POST', body: 'x'.repeat(2000) });
    assert.deepEqual(await ok.json(), { bytes: 2000 });
    const big = await fetch(`http://127.0.0.1:${port}/echo`, { method: 'POST', body: 'x'.repeat(5000) });
    assert.equal(big.status, 413);
    assert.match(((await big.json()) as { error: string }).error, /exceeds the limit of 2048/);
    // Chunked, no content-length: cut off once it passes the limit.
    const stream = new ReadableStream({
      start(c) {
        for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode('y'.repeat(1000)));
        c.close();
      },
    });
    const chunked = await fetch(`http://127.0.0.1:${port}/echo`, {
      method: 'POST',
      body: stream,
      duplex: 'half',
    } as RequestInit);
    assert.equal(chunked.status, 413);
  } finally {
    await server.stop();
  }
});

test('slow clients are cut off: unfinished headers, a dribbled body, an idle keep-alive socket', async () => {
  const { server, port } = await tightServer();
  try {
    // Headers never finished: the headers timeout (300 ms) closes the socket.
    const slowHeaders = connect(port, '127.0.0.1');
    await new Promise((r) => slowHeaders.once('connect', r));
    slowHeaders.write('POST /echo HTTP/1.1\r\nHost: x\r\n');
    const a = await closedWithin(slowHeaders, 3000);
    assert.ok(a.closedAfterMs >= 250, `closed after ${a.closedAfterMs} ms`);

    // Headers sent, body dribbled one byte at a time: the request timeout (600 ms) ends it.
    const slowBody = connect(port, '127.0.0.1');
    await new Promise((r) => slowBody.once('connect', r));
    slowBody.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n');
    const drip = setInterval(() => slowBody.writable && slowBody.write('z'), 50);
    const b = await closedWithin(slowBody, 4000);
    clearInterval(drip);
    assert.ok(b.closedAfterMs >= 500, `closed after ${b.closedAfterMs} ms`);
    assert.doesNotMatch(b.data, /"bytes"/, 'the dribbled request was never answered');

    // A finished request on a keep-alive socket, then silence: the idle timeout (300 ms) closes it.
    const idle = connect(port, '127.0.0.1');
    await new Promise((r) => idle.once('connect', r));
    idle.write('GET /ping HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    const c = await closedWithin(idle, 3000);
    assert.match(c.data, /200 OK/);
    assert.ok(c.closedAfterMs >= 250, `closed after ${c.closedAfterMs} ms`);
  } finally {
    await server.stop();
  }
});
