import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface ChildOptions {
  /** Extra arguments for node itself (before the script). */
  nodeArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** A stdout line that means "ready"; by default a line starting with `READY `. */
  ready?: (line: string) => boolean;
  readyTimeoutMs?: number;
}

interface Waiter {
  test: (line: string) => boolean;
  resolve: (line: string) => void;
}

/**
 * A process under test, isolated from the load generator (its own RSS, its own event loop).
 * The bench fixtures speak a line protocol: `READY {json}` once, then one `REPLY {json}` for
 * each `{json}` command written to their stdin.
 */
export class BenchChild {
  readonly proc: ChildProcess;
  readonly startedAt = performance.now();
  /** ms from spawn to the ready line. */
  readyMs = Number.NaN;
  readyInfo: Record<string, unknown> = {};
  private readonly lines: string[] = [];
  private readonly waiters: Waiter[] = [];
  private nextId = 1;
  private readonly replies = new Map<number, (reply: Record<string, unknown>) => void>();
  private exited: Promise<number | null>;
  private stderrTail = '';

  private constructor(script: string, args: string[], options: ChildOptions) {
    this.proc = spawn(process.execPath, [...(options.nodeArgs ?? []), script, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, NODE_NO_WARNINGS: '1', ...options.env },
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)));
    this.proc.stderr?.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-4000);
    });
    createInterface({ input: this.proc.stdout! }).on('line', (line) => this.onLine(line));
  }

  get pid(): number {
    if (this.proc.pid === undefined) throw new Error('child has no pid');
    return this.proc.pid;
  }

  private onLine(line: string): void {
    if (line.startsWith('REPLY ')) {
      const reply = JSON.parse(line.slice(6)) as Record<string, unknown>;
      const resolve = this.replies.get(Number(reply.id));
      this.replies.delete(Number(reply.id));
      resolve?.(reply);
      return;
    }
    this.lines.push(line);
    for (const w of [...this.waiters]) {
      if (w.test(line)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  }

  /** Resolves with the first stdout line (past or future) that passes `test`. */
  waitForLine(test: (line: string) => boolean, timeoutMs: number, what: string): Promise<string> {
    const seen = this.lines.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${what}: no such line within ${timeoutMs} ms; stderr: ${this.stderrTail}`));
      }, timeoutMs);
      this.waiters.push({
        test,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${what}: child exited with ${code} before it; stderr: ${this.stderrTail}`));
      });
    });
  }

  static async start(script: string, args: string[], options: ChildOptions = {}): Promise<BenchChild> {
    const child = new BenchChild(script, args, options);
    const ready = options.ready ?? ((l: string) => l.startsWith('READY '));
    try {
      const line = await child.waitForLine(ready, options.readyTimeoutMs ?? 30_000, `starting ${script}`);
      child.readyMs = performance.now() - child.startedAt;
      if (line.startsWith('READY ')) child.readyInfo = JSON.parse(line.slice(6)) as Record<string, unknown>;
    } catch (err) {
      await child.stop();
      throw err;
    }
    return child;
  }

  /** Sends a command and waits for its reply; a reply with `error` rejects. */
  command(
    op: string,
    args: Record<string, unknown> = {},
    timeoutMs = 60_000,
  ): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`command ${op} timed out`)), timeoutMs);
      this.replies.set(id, (reply) => {
        clearTimeout(timer);
        if (typeof reply.error === 'string') reject(new Error(`command ${op}: ${reply.error}`));
        else resolve(reply);
      });
      this.proc.stdin?.write(`${JSON.stringify({ id, op, ...args })}\n`);
    });
  }

  /** SIGTERM, then SIGKILL if it has not exited within the grace period. */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
