import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { StoppableTimer } from '../uplink/backoff.ts';
import { siblingModule } from '../worker-thread.ts';
import { sampleLinux } from './linux-system.ts';
import { cpuCounters, type SystemCounters, type SystemFigures, withRates } from './system-figures.ts';

type Reply = { ok: true; figures: SystemFigures } | { ok: false; error: string };

/**
 * Where a sample comes from. `proc`: /proc and /sys read in the agent's own process (Linux).
 * `probe`: systeminformation in a short-lived child process (every other platform). `auto`
 * picks `proc` on Linux.
 */
export type SystemSource = 'auto' | 'proc' | 'probe';

/** Counters taken this long apart give the first sample its CPU load. */
const FIRST_LOAD_WINDOW_MS = 500;

/**
 * Takes system samples, one a minute by default. On Linux the figures are read straight from
 * /proc and /sys in this process (linux-system.ts): a handful of small asynchronous reads.
 * systeminformation gets the same figures by starting shells: some 90 processes per sample on
 * a box with two interfaces (`cat` for each sysfs file of each interface, `ip`, `df`,
 * `sensors`), about 200 ms of CPU in all, more on a small board and with more interfaces.
 * That was a burst on a core once a minute, felt by inference latency on a busy box; its
 * execSync calls would also stall the event loop, so it ran in a child process.
 * Elsewhere systeminformation still does the work, in a short-lived child process: a worker
 * thread avoided the stall too, but each one left some 6 MiB behind in the agent (allocator
 * arenas and V8 state freed into the process, not to the system); a process returns
 * everything when it exits. A sample that has not come back within `timeoutMs` is given up
 * (and its process killed).
 */
export class SystemSampler {
  private readonly running = new Set<ChildProcess>();
  private previous: SystemCounters | undefined;
  private readonly timer = new StoppableTimer();
  private stopped = false;
  readonly source: 'proc' | 'probe';

  constructor(
    private readonly dataDir: string,
    private readonly timeoutMs = 20_000,
    source: SystemSource = 'auto',
  ) {
    this.source = source === 'auto' ? (process.platform === 'linux' ? 'proc' : 'probe') : source;
  }

  /**
   * CPU load and network rates cover the time since the previous sample (Node's own CPU
   * counters, read when the figures are in); the first sample measures half a second itself.
   */
  async sample(): Promise<SystemFigures> {
    this.stopped = false;
    if (this.source === 'probe') {
      const figures = await this.probe(this.previous === undefined);
      this.previous = withRates(figures, cpuCounters(), Date.now(), this.previous);
      return figures;
    }
    let start = this.previous;
    if (start === undefined) {
      start = { atMs: Date.now(), cores: cpuCounters(), network: {} };
      await this.timer.sleep(FIRST_LOAD_WINDOW_MS);
    }
    if (this.stopped) throw new Error('the system sampler stopped');
    const figures = await this.inProcess();
    this.previous = withRates(figures, cpuCounters(), Date.now(), start);
    return figures;
  }

  private inProcess(): Promise<SystemFigures> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      sampleLinux(this.dataDir),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the system sample took longer than ${this.timeoutMs} ms`)),
          this.timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  }

  /** Ends samples in flight (their promises reject): an agent that stops leaves no process behind. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer.cancel();
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
