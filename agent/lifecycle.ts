import type { Agent } from './main.ts';

export interface LifecycleOptions {
  /** The graceful path's deadline; past it the process exits anyway (the forced path). */
  shutdownDeadlineMs: number;
  exit?: (code: number) => void;
}

/**
 * Runs the agent until SIGTERM or SIGINT. The graceful path stops intake, drains inference,
 * flushes the outbox batch, ends MQTT and closes SQLite; if that has not finished by the
 * deadline the process exits non-zero, since systemd will kill it anyway.
 */
export async function runUntilSignal(agent: Agent, options: LifecycleOptions): Promise<void> {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let stopping = false;
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
    agent.stop().then(
      () => {
        clearTimeout(force);
        exit(0);
      },
      (err: unknown) => {
        agent.log.error({ err }, 'shutdown failed');
        exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  await agent.start();
}
