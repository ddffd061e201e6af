import { createJsonLogger, type DestinationStream, type Logger } from '../shared/log.ts';

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

/** The control plane's root logger: JSON lines on stdout; components take `.child({ component })`. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return createJsonLogger({
    level,
    base: { pid: process.pid, service: 'outpost-control-plane' },
    redact: REDACT,
    ...(destination === undefined ? {} : { destination }),
  });
}
