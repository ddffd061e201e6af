import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { type EmbeddedBroker, startEmbeddedBroker } from '../../agent/broker/embedded.ts';
import { tempDir } from './tmp.ts';

export interface TestBroker {
  kind: 'mosquitto' | 'aedes';
  port: number;
  url: string;
  /** Stops the broker; `start()` brings it back on the same port (broker-outage tests). */
  stop(): Promise<void>;
  start(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export function mosquittoPath(): string | undefined {
  for (const candidate of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto']) {
    try {
      execFileSync(candidate, ['-h'], { stdio: 'ignore' });
      return candidate;
    } catch (err) {
      // mosquitto -h exits 3 after printing help: it exists.
      if ((err as { status?: number }).status !== undefined && (err as { code?: string }).code !== 'ENOENT')
        return candidate;
    }
  }
  return undefined;
}

async function waitForPort(port: number, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`broker did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface BrokerOptions {
  /** mosquitto.conf lines appended after the listener (ACLs, auth); mosquitto only. */
  extraConfig?: string;
  /** Force a kind; default follows OUTPOST_TEST_BROKER, else mosquitto when installed. */
  kind?: 'mosquitto' | 'aedes';
}

/** A real broker on an ephemeral loopback port: mosquitto when installed (mandatory in CI), else aedes. */
export async function startBroker(options: BrokerOptions = {}): Promise<TestBroker> {
  const required = process.env.OUTPOST_TEST_BROKER;
  const mosquitto = mosquittoPath();
  let kind = options.kind ?? (mosquitto !== undefined ? 'mosquitto' : 'aedes');
  if (required === 'mosquitto' && kind === 'aedes' && options.kind === undefined) kind = 'mosquitto';
  if (kind === 'mosquitto' && mosquitto === undefined) {
    throw new Error(
      'mosquitto is required (OUTPOST_TEST_BROKER=mosquitto) but not installed: apt-get install -y mosquitto',
    );
  }
  const port = await freePort();
  const url = `mqtt://127.0.0.1:${port}`;
  if (kind === 'aedes') {
    let broker: EmbeddedBroker | undefined;
    const start = async () => {
      broker = await startEmbeddedBroker({ port });
    };
    await start();
    return {
      kind,
      port,
      url,
      start,
      async stop() {
        await broker?.stop();
        broker = undefined;
      },
    };
  }
  const dir = tempDir('mosquitto');
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      options.extraConfig === undefined ? 'allow_anonymous true' : '',
      'persistence false',
      'log_dest stderr',
      'log_type error',
      'max_queued_messages 100000',
      options.extraConfig ?? '',
      '',
    ].join('\n'),
  );
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(mosquitto as string, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<never>((_, reject) =>
      child?.once('exit', (code) => reject(new Error(`mosquitto exited (${code}): ${stderr}`))),
    );
    await Promise.race([waitForPort(port), exited]);
  };
  await start();
  return {
    kind,
    port,
    url,
    start,
    async stop() {
      const c = child;
      child = undefined;
      if (c === undefined || c.exitCode !== null) return;
      const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 3_000);
      await gone;
      clearTimeout(timer);
    },
  };
}
