import { createJsonLogger, type DestinationStream, type Logger } from '../shared/log.ts';

export type { Logger };

/** Paths blanked in every log line: tokens, passwords and keys never reach journald. */
export const REDACT_PATHS = [
  'token',
  'password',
  'privateKey',
  'authorization',
  '*.token',
  '*.password',
  '*.privateKey',
  '*.authorization',
  'headers.authorization',
  'config.http.token',
  'config.uplink.password',
  'config.uplink.tls.key',
  'config.sensors.mqtt.password',
  'config.sync.enrolmentToken',
  'config.updates.token',
];

/** The root logger: JSON lines on stdout (journald takes them). Components take `.child({ component })`. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return createJsonLogger({
    level,
    base: { pid: process.pid },
    redact: REDACT_PATHS,
    ...(destination === undefined ? {} : { destination }),
  });
}

/**
 * Logs a repeating failure once per interval with a count of what was suppressed, so a broken
 * sensor at 1 kHz does not flood the journal.
 */
export class RateLimitedLog {
  private last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  warn(key: string, fields: Record<string, unknown>, message: string): void {
    const at = this.now();
    const seen = this.last.get(key);
    if (seen !== undefined && at - seen.at < this.intervalMs) {
      seen.suppressed++;
      return;
    }
    this.last.set(key, { at, suppressed: 0 });
    this.log.warn({ ...fields, suppressedSinceLast: seen?.suppressed ?? 0 }, message);
  }
}
