import { spawn } from 'node:child_process';
import type { Logger } from './log.ts';

/**
 * sd_notify(3) for a Node process. Node has no AF_UNIX datagram sockets, so each message is
 * handed to `systemd-notify`, which ships with systemd wherever a Type=notify unit can run.
 * Since systemd 246 `systemd-notify` waits on a BARRIER=1 round trip until PID 1 has
 * processed the message, so it does not lose the race where the sender exits before PID 1
 * can attribute it to the unit's cgroup. Because the sender is a child, the unit needs
 * `NotifyAccess=all`.
 */
export interface SdNotifierOptions {
  env?: NodeJS.ProcessEnv;
  log: Logger;
  /** The binary; tests point it elsewhere. */
  command?: string;
  pid?: number;
}

export class SdNotifier {
  private readonly socket: string | undefined;
  private readonly env: NodeJS.ProcessEnv;
  private readonly command: string;
  private readonly pid: number;
  private readonly log: Logger;
  private chain: Promise<void> = Promise.resolve();
  private watchdog: NodeJS.Timeout | undefined;
  private warned = false;

  constructor(options: SdNotifierOptions) {
    this.env = options.env ?? process.env;
    this.socket = this.env.NOTIFY_SOCKET === '' ? undefined : this.env.NOTIFY_SOCKET;
    this.command = options.command ?? 'systemd-notify';
    this.pid = options.pid ?? process.pid;
    this.log = options.log;
  }

  get enabled(): boolean {
    return this.socket !== undefined;
  }

  /**
   * The watchdog interval systemd asked for (WATCHDOG_USEC, for this PID when WATCHDOG_PID is
   * set), or undefined. Pinging at half of it leaves room for one slow round.
   */
  watchdogIntervalMs(): number | undefined {
    const usec = Number(this.env.WATCHDOG_USEC);
    if (!Number.isFinite(usec) || usec <= 0) return undefined;
    const forPid = this.env.WATCHDOG_PID;
    if (forPid !== undefined && forPid !== '' && Number(forPid) !== this.pid) return undefined;
    return Math.max(1, Math.floor(usec / 1000));
  }

  /** Sends `KEY=value` lines; resolves when the sender has finished (never rejects). */
  notify(...lines: string[]): Promise<void> {
    if (this.socket === undefined) return Promise.resolve();
    // Serialised so READY never overtakes STOPPING on a fast shutdown.
    this.chain = this.chain.then(() => this.send(lines));
    return this.chain;
  }

  ready(status?: string): Promise<void> {
    return this.notify('READY=1', ...(status === undefined ? [] : [`STATUS=${status}`]));
  }

  stopping(): Promise<void> {
    this.stopWatchdog();
    return this.notify('STOPPING=1', 'STATUS=stopping');
  }

  reloading(): Promise<void> {
    return this.notify('RELOADING=1');
  }

  /** Pings WATCHDOG=1 at half the interval while `healthy()` holds; a stuck event loop stops the pings. */
  startWatchdog(healthy: () => boolean = () => true): void {
    const interval = this.watchdogIntervalMs();
    if (interval === undefined || this.socket === undefined || this.watchdog !== undefined) return;
    const every = Math.max(1, Math.floor(interval / 2));
    this.watchdog = setInterval(() => {
      if (healthy()) void this.notify('WATCHDOG=1');
    }, every);
    this.watchdog.unref();
    this.log.info({ intervalMs: every }, 'systemd watchdog pings on');
  }

  stopWatchdog(): void {
    if (this.watchdog !== undefined) clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  private send(lines: string[]): Promise<void> {
    return new Promise((resolve) => {
      let child: ReturnType<typeof spawn>;
      try {
        child = spawn(this.command, lines, {
          env: { ...this.env, NOTIFY_SOCKET: this.socket },
          stdio: ['ignore', 'ignore', 'pipe'],
        });
      } catch (err) {
        this.warnOnce(err, lines);
        resolve();
        return;
      }
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      // A sender that hangs (PID 1 never answering the barrier) must not block the chain.
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      child.once('error', (err) => {
        clearTimeout(timer);
        this.warnOnce(err, lines);
        resolve();
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        if (code !== 0) this.warnOnce(new Error(stderr.trim() || `exit ${code}`), lines);
        resolve();
      });
    });
  }

  private warnOnce(err: unknown, lines: string[]): void {
    if (this.warned) return;
    this.warned = true;
    this.log.warn({ err, message: lines.join(' ') }, `sd_notify via ${this.command} failed`);
  }
}
