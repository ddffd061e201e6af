import { OUTPOST_VERSION } from '../shared/version.ts';
import type { AgentConfig } from './config.ts';
import type { Agent } from './main.ts';
import type { RunState } from './run-state.ts';
import type { SdNotifier } from './sd-notify.ts';

/**
 * A config part that SIGHUP may change in a running agent. `keys` are the dotted prefixes it
 * owns; `apply` makes the new value take effect. Everything not covered by a reloader needs a
 * restart (listeners, broker connections, data paths, worker counts), and SIGHUP says so.
 */
export interface Reloader {
  keys: readonly string[];
  apply(next: Readonly<AgentConfig>): void;
}

export interface LifecycleOptions {
  /** The graceful path's deadline; past it the process exits 1 (the forced path). */
  shutdownDeadlineMs: number;
  notifier?: SdNotifier;
  runState?: RunState;
  /** Re-reads the config (file and environment) for SIGHUP; throws when it is invalid. */
  loadConfig?: () => Readonly<AgentConfig>;
  reloaders?: readonly Reloader[];
  exit?: (code: number) => void;
}

export interface ReloadResult {
  applied: string[];
  needsRestart: string[];
}

/**
 * Runs the agent until SIGTERM or SIGINT. The graceful path (agent.stop) stops intake,
 * drains inference, flushes the outbox batch, ends MQTT and closes SQLite; if that has not
 * finished by the deadline the process exits 1 without marking the run clean, since systemd
 * would kill it anyway. A second signal exits at once.
 */
export async function runUntilSignal(agent: Agent, options: LifecycleOptions): Promise<void> {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const { notifier, runState } = options;
  let current = agent.config;
  let stopping = false;
  let started: Promise<void> = Promise.resolve();

  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) {
      agent.log.warn({ signal }, 'second signal: exiting now');
      exit(130);
      return;
    }
    stopping = true;
    agent.log.info({ signal, deadlineMs: options.shutdownDeadlineMs }, 'shutting down');
    const force = setTimeout(() => {
      agent.log.error(
        { deadlineMs: options.shutdownDeadlineMs },
        'graceful shutdown missed its deadline; exiting',
      );
      exit(1);
    }, options.shutdownDeadlineMs);
    force.unref();
    const graceful = async () => {
      await notifier?.stopping();
      await started.catch(() => undefined);
      await agent.stop();
      runState?.end();
    };
    graceful().then(
      () => {
        clearTimeout(force);
        agent.log.info('shutdown complete');
        exit(0);
      },
      (err: unknown) => {
        clearTimeout(force);
        agent.log.error({ err }, 'shutdown failed');
        exit(1);
      },
    );
  };

  const reload = () => {
    if (stopping || options.loadConfig === undefined) return;
    void (async () => {
      await notifier?.reloading();
      try {
        const next = options.loadConfig?.() ?? current;
        const result = planReload(current, next, options.reloaders ?? []);
        // Logged before applying, so a new, quieter log level does not hide the record of it.
        agent.log.info(
          { applied: result.applied, needsRestart: result.needsRestart },
          'reloading configuration',
        );
        for (const r of result.reloaders) r.apply(next);
        current = next;
        if (result.needsRestart.length > 0)
          agent.log.warn({ keys: result.needsRestart }, 'these changes take effect after a restart');
      } catch (err) {
        agent.log.error({ err }, 'reload failed; keeping the running configuration');
      }
      await notifier?.ready('running');
    })();
  };

  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.on('SIGHUP', reload);

  const run = runState?.begin({ bootId: agent.bootId, agentVersion: OUTPOST_VERSION });
  if (run !== undefined && run.uncleanStreak > 0)
    agent.log.warn(
      { uncleanStreak: run.uncleanStreak, previous: run.previous },
      'the previous run did not stop cleanly',
    );
  started = agent.start();
  try {
    await started;
  } catch (err) {
    agent.log.fatal({ err }, 'agent failed to start');
    await agent.stop().catch(() => undefined);
    exit(1);
    return;
  }
  if (stopping) return;
  await notifier?.ready('running');
  notifier?.startWatchdog(() => !stopping);
}

/** Applies what the reloaders cover and lists every other changed key. */
export function applyReload(
  prev: Readonly<AgentConfig>,
  next: Readonly<AgentConfig>,
  reloaders: readonly Reloader[],
): ReloadResult {
  const plan = planReload(prev, next, reloaders);
  for (const r of plan.reloaders) r.apply(next);
  return { applied: plan.applied, needsRestart: plan.needsRestart };
}

/** Which changed keys the reloaders cover (and which reloaders must run), and which need a restart. */
export function planReload(
  prev: Readonly<AgentConfig>,
  next: Readonly<AgentConfig>,
  reloaders: readonly Reloader[],
): ReloadResult & { reloaders: Reloader[] } {
  const changed = changedKeys(prev, next);
  const applied: string[] = [];
  const needsRestart: string[] = [];
  const used = new Set<Reloader>();
  for (const key of changed) {
    const owner = reloaders.find((r) => r.keys.some((k) => key === k || key.startsWith(`${k}.`)));
    if (owner === undefined) needsRestart.push(key);
    else {
      applied.push(key);
      used.add(owner);
    }
  }
  return { applied, needsRestart, reloaders: [...used] };
}

export function changedKeys(a: unknown, b: unknown, prefix = ''): string[] {
  const isObj = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => changedKeys(a[k], b[k], prefix === '' ? k : `${prefix}.${k}`));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix];
}
