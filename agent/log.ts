import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

/** Paths pino blanks in every log line: tokens, passwords and keys never reach journald. */
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

/** The root logger: pino JSON on stdout (journald takes it). Components take `.child({ component })`. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
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
