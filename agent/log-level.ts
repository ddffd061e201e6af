import { pino } from 'pino';
import { type Logger, REDACT_PATHS } from './log.ts';

export interface ReloadableLogger {
  logger: Logger;
  /** Sets the level on the root and every child logger made so far (pino copies it at creation). */
  setLevel(level: string): void;
}

/** The daemon's root logger, same format as createLogger(), whose level SIGHUP can change. */
export function createReloadableLogger(level: string): ReloadableLogger {
  const children = new Set<Logger>();
  const logger = pino({
    level,
    base: { pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    onChild: (child) => {
      children.add(child);
    },
  });
  return {
    logger,
    setLevel(next) {
      logger.level = next;
      for (const child of children) child.level = next;
    },
  };
}
