import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { openTransfer, type TransferOptions, type TransferResponse } from '../agent/updater/file-transfer.ts';
import { isOutpostError } from '../shared/errors.ts';

// A throwaway self-signed certificate for 127.0.0.1 / localhost (valid 2000–2100), trusted only
// by the TLS test below through `ca`.
const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJVMVZbnKq3b0Mq0e
NvR3vlM5JSsCyvHJ7AfS4SFbZmWhRANCAATW63Cpyc55rrT9XhEdRjgYsmHA8lhd
5NGX63md0gvX7rLOMP2FWY2JuyUjBuWmx5LoWZCcD7lP+nr1taotq25T
-----END PRIVATE KEY-----
`;
const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIBZzCCAQ2gAwIBAgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAlsb2NhbGhv
c3QwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMBQxEjAQBgNVBAMM
CWxvY2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNbrcKnJznmutP1e
ER1GOBiyYcDyWF3k0ZfreZ3SC9fuss4w/YVZjYm7JSMG5abHkuhZkJwPuU/6evW1
qi2rblOjTjBMMBoGA1UdEQQTMBGCCWxvY2FsaG9zdIcEfwAAATAPBgNVHRMBAf8E
BTADAQH/MB0GA1UdDgQWBBRXwVvy1gU57++w0/LPkB69NOX3dTAKBggqhkjOPQQD
AgNIADBFAiEAxLAmGrMvSQ6WfT2F11M7sARqLgVDL1wiFvoHiF2oG6oCIHahVvY8
qileDVSWTFvjY4Ymbok9Y0B8RL0trC6lkJE8
-----END CERTIFICATE-----
`;

const KiB = 1024;
const OPTIONS: TransferOptions = {
  connectTimeoutMs: 2_000,
  responseTimeoutMs: 2_000,
  idleTimeoutMs: 2_000,
  bufferBytes: 64 * KiB,
  buffers: 2,
};

const closers: Array<() => void> = [];
after(() => {
  for (const close of closers) close();
});

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => {
    (server as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
    server.close();
  });
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function httpServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  return listen(createHttpServer(handler)).then((host) => `http://${host}`);
}

/** A server that answers every connection with exactly these bytes (whatever was asked). */
function rawServer(reply: (socket: Socket) => void): Promise<string> {
  return listen(
    createTcpServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => reply(socket));
    }),
  ).then((host) => `http://${host}`);
}

/** Reads the whole body, releasing each buffer after it is copied (as the writer does after writing). */
async function readAll(res: TransferResponse): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of res.body) {
    parts.push(Buffer.from(chunk));
    res.release(chunk);
  }
  return Buffer.concat(parts);
}

async function rejects(p: Promise<unknown>, pattern: RegExp, code?: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isOutpostError(err), `an OutpostError, got ${String(err)}`);
    assert.match(err.message, pattern);
    if (code !== undefined) assert.equal(err.code, `OUTPOST_ERR_${code}`);
    return true;
  });
}

describe('updater: the file transfer (HTTP/1.1 into reused buffers)', () => {
  test('a Content-Length body arrives whole and in order through two 64 KiB buffers', async () => {
    const data = randomBytes(3 * 1024 * KiB + 123);
    const url = await httpServer((_req, res) => {
      res.writeHead(200, { 'content-length': data.length, etag: '"x"' });
      res.end(data);
    });
    const res = await openTransfer(`${url}/m`, {}, OPTIONS);
    assert.equal(res.status, 200);
    assert.equal(res.headers['etag'], '"x"');
    assert.ok((await readAll(res)).equals(data));
  });

  test('the socket stops reading while the caller holds every buffer, and goes on after release()', async () => {
    const data = randomBytes(8 * 1024 * KiB);
    let written = 0;
    const url = await httpServer((_req, res) => {
      res.writeHead(200, { 'content-length': data.length });
      const pump = () => {
        while (written < data.length) {
          const next = data.subarray(written, written + 64 * KiB);
          written += next.length;
          if (!res.write(next)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    const res = await openTransfer(`${url}/m`, {}, OPTIONS);
    const held: Buffer[] = [];
    const it = res.body[Symbol.asyncIterator]();
    for (let i = 0; i < 2; i++) {
      const next = await it.next();
      assert.equal(next.done, false);
      held.push(next.value as Buffer);
    }
    await new Promise((r) => setTimeout(r, 300));
    // Two buffers held, the socket paused: the server is stuck well short of the end, held
    // back by TCP (what the kernel buffers on both sides), not by memory in the agent.
    assert.ok(res.received < 2 * 64 * KiB + 64 * KiB, `received ${res.received} while paused`);
    assert.ok(written < data.length, 'the server was pushed back');
    const parts = held.map((b) => Buffer.from(b));
    for (const b of held) res.release(b);
    for (;;) {
      const next = await it.next();
      if (next.done === true) break;
      parts.push(Buffer.from(next.value));
      res.release(next.value);
    }
    assert.ok(Buffer.concat(parts).equals(data));
  });

  test('chunked bodies are decoded across read boundaries, with extensions and trailers', async () => {
    const data = randomBytes(300 * KiB);
    const url = await rawServer((socket) => {
      const pieces = [Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')];
      let at = 0;
      let n = 1;
      while (at < data.length) {
        const size = Math.min(data.length - at, n * 997);
        pieces.push(Buffer.from(`${size.toString(16)}${n % 3 === 0 ? ';ext=1' : ''}\r\n`));
        pieces.push(data.subarray(at, at + size), Buffer.from('\r\n'));
        at += size;
        n++;
      }
      pieces.push(Buffer.from('0\r\nx-trailer: 1\r\n\r\n'));
      const all = Buffer.concat(pieces);
      // Odd write sizes so that size lines and CRLFs split between reads.
      let sent = 0;
      const step = () => {
        if (sent >= all.length) return;
        socket.write(all.subarray(sent, sent + 7001));
        sent += 7001;
        setImmediate(step);
      };
      step();
    });
    const res = await openTransfer(`${url}/m`, {}, OPTIONS);
    assert.ok((await readAll(res)).equals(data));
  });

  test('a body delimited by the end of the connection, after a 100 Continue', async () => {
    const data = randomBytes(200 * KiB);
    const url = await rawServer((socket) => {
      socket.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nServer: old\r\n\r\n');
      socket.end(data);
    });
    const res = await openTransfer(`${url}/m`, {}, OPTIONS);
    assert.equal(res.status, 200);
    assert.ok((await readAll(res)).equals(data));
  });

  test('a connection that ends short of Content-Length fails after handing out what arrived', async () => {
    const data = randomBytes(100 * KiB);
    const url = await rawServer((socket) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${data.length * 2}\r\n\r\n`);
      socket.end(data);
    });
    const res = await openTransfer(`${url}/m`, {}, OPTIONS);
    const parts: Buffer[] = [];
    await rejects(
      (async () => {
        for await (const chunk of res.body) {
          parts.push(Buffer.from(chunk));
          res.release(chunk);
        }
      })(),
      /closed 102400 bytes short of the end/,
      'DOWNLOAD_FAILED',
    );
    assert.ok(Buffer.concat(parts).equals(data), 'the bytes before the cut are kept (for a resume)');
  });

  test('redirects are followed; Authorization goes along to the same origin only', async () => {
    const seen: Array<{ path: string; auth: string | undefined }> = [];
    const other = await httpServer((req, res) => {
      seen.push({ path: req.url ?? '', auth: req.headers.authorization });
      res.writeHead(200, { 'content-length': 2 });
      res.end('ok');
    });
    const first = await httpServer((req, res) => {
      seen.push({ path: req.url ?? '', auth: req.headers.authorization });
      if (req.url === '/a') res.writeHead(302, { location: '/b' }).end();
      else res.writeHead(307, { location: `${other}/c?x=1` }).end();
    });
    const res = await openTransfer(`${first}/a`, { authorization: 'Bearer t' }, OPTIONS);
    assert.equal((await readAll(res)).toString(), 'ok');
    assert.equal(res.url, `${other}/c?x=1`);
    assert.deepEqual(seen, [
      { path: '/a', auth: 'Bearer t' },
      { path: '/b', auth: 'Bearer t' },
      { path: '/c?x=1', auth: undefined },
    ]);
    const loop = await httpServer((_req, res) => res.writeHead(302, { location: '/again' }).end());
    await rejects(openTransfer(`${loop}/a`, {}, { ...OPTIONS, maxRedirects: 3 }), /more than 3 redirects/);
  });

  test('a header value that would inject another header is refused before anything is sent', async () => {
    let connected = false;
    const url = await rawServer(() => {
      connected = true;
    });
    await assert.rejects(
      openTransfer(`${url}/m`, { 'if-range': '"x"\r\nx-evil: 1' }, OPTIONS),
      /cannot carry/,
    );
    assert.equal(connected, false);
  });

  test('malformed responses are refused: garbage, an endless head, a bad chunk size', async () => {
    const garbage = await rawServer((socket) => socket.end('SSH-2.0-OpenSSH\r\n\r\n'));
    await rejects(openTransfer(`${garbage}/m`, {}, OPTIONS), /not an HTTP\/1.x response/);
    const endless = await rawServer((socket) => {
      socket.write('HTTP/1.1 200 OK\r\n');
      const pump = () => {
        if (socket.destroyed) return;
        if (socket.write(`x-filler: ${'a'.repeat(1000)}\r\n`)) setImmediate(pump);
        else socket.once('drain', pump);
      };
      pump();
    });
    await rejects(openTransfer(`${endless}/m`, {}, OPTIONS), /response head longer than/);
    const badChunk = await rawServer((socket) =>
      socket.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'),
    );
    const res = await openTransfer(`${badChunk}/m`, {}, OPTIONS);
    await rejects(readAll(res), /bad chunk size/);
  });

  test('a server that never answers, or stops sending, times out', async () => {
    const silent = await rawServer(() => undefined);
    await rejects(
      openTransfer(`${silent}/m`, {}, { ...OPTIONS, responseTimeoutMs: 200 }),
      /no response in time/,
      'TIMEOUT',
    );
    const stalls = await rawServer((socket) =>
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'),
    );
    const res = await openTransfer(`${stalls}/m`, {}, { ...OPTIONS, idleTimeoutMs: 200 });
    await rejects(readAll(res), /no data for 200 ms/, 'TIMEOUT');
  });

  test('https: a trusted certificate carries the body; an unknown one is refused', async () => {
    const data = randomBytes(500 * KiB);
    const server = createHttpsServer({ key: TEST_KEY, cert: TEST_CERT }, (_req, res) => {
      res.writeHead(200, { 'content-length': data.length });
      res.end(data);
    });
    const host = await listen(server);
    const res = await openTransfer(`https://${host}/m`, {}, { ...OPTIONS, tls: { ca: TEST_CERT } });
    assert.ok((await readAll(res)).equals(data));
    await assert.rejects(openTransfer(`https://${host}/m`, {}, OPTIONS), /self[- ]signed|unable to verify/i);
  });
});
