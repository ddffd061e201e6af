import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { siblingModule } from '../worker-thread.ts';
import { cpuCounters, type SystemCounters, type SystemFigures, withRates } from './system-figures.ts';

type Reply = { ok: true; figures: SystemFigures } | { ok: false; error: string };

/**
 * Takes system samples in a short-lived child process, one a minute by default. On Linux,
 * systeminformation reads CPU load, temperatures and the mount table through execSync, which
 * would stall the agent's event loop (and so inference and HTTP) for as long as a shell takes
 * to start: up to 800 ms under load. A worker thread avoided the stall, but each one left some
 * 6 MiB behind in the agent (allocator arenas and V8 state freed into the process, not to the
 * system); a process returns everything when it exits, and systeminformation spawns a handful
 * of shells per sample anyway. A sample that has not come back within `timeoutMs` is killed.
 */
export class SystemSampler {
  private readonly running = new Set<ChildProcess>();
  private previous: SystemCounters | undefined;

  constructor(
    private readonly dataDir: string,
    private readonly timeoutMs = 20_000,
  ) {}

  /**
   * CPU load and network rates cover the time since the previous sample (Node's own CPU
   * counters, read when the probe answers); the first sample measures half a second itself.
   */
  async sample(): Promise<SystemFigures> {
    const figures = await this.probe(this.previous === undefined);
    this.previous = withRates(figures, cpuCounters(), Date.now(), this.previous);
    return figures;
  }

  /** Ends samples in flight (their promises reject): an agent that stops leaves no process behind. */
  async stop(): Promise<void> {
    await Promise.all(
      [...this.running].map(
        (child) =>
          new Promise<void>((resolve) => {
            child.once('exit', () => resolve());
            if (!child.kill('SIGKILL')) resolve();
          }),
      ),
    );
  }

  private probe(measureLoad: boolean): Promise<SystemFigures> {
    const { url, fromSource } = siblingModule(import.meta.url, 'system-probe');
    const args = [this.dataDir, measureLoad ? 'measure-load' : 'counters'];
    // The agent's own flags (inspector, heap limits, test loaders) are not the probe's business.
    const execArgv = fromSource ? ['--import', import.meta.resolve('tsx')] : [];
    return new Promise((resolve, reject) => {
      const child = fork(fileURLToPath(url), args, {
        execArgv,
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        serialization: 'json',
      });
      this.running.add(child);
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr = (stderr + chunk.toString()).slice(-2000);
      });
      let settled = false;
      const finish = (err: Error | undefined, figures?: SystemFigures) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        if (err !== undefined) reject(err);
        else resolve(figures as SystemFigures);
      };
      const timer = setTimeout(
        () => finish(new Error(`the system sample took longer than ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      child.once('message', (m: Reply) =>
        m.ok ? finish(undefined, m.figures) : finish(new Error(`system sample failed: ${m.error}`)),
      );
      child.once('error', (err) => finish(err));
      child.once('exit', (code, signal) => {
        this.running.delete(child);
        finish(
          new Error(
            `the system sample process exited (${signal ?? `code ${code}`})${stderr === '' ? '' : `: ${stderr.trim()}`}`,
          ),
        );
      });
    });
  }
}
