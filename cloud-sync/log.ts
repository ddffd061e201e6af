import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

/** Credentials, tokens and keys never reach the log. */
const REDACT = [
  'token',
  'credential',
  'privateKey',
  'authorization',
  'req.headers.authorization',
  '*.token',
  '*.credential',
  '*.privateKey',
  'config.operatorToken',
];

/** The control plane's root logger: pino JSON on stdout; components take `.child({ component })`. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid, service: 'outpost-control-plane' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
