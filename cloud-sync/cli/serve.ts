import { parseArgs } from 'node:util';
import { createControlPlane } from '../control-plane.ts';
import { type ControlPlaneConfigInput, loadControlPlaneConfig } from '../server/config.ts';

export const SERVE_USAGE = `  outpost serve [--config FILE] [--host H] [--port N] [--data-dir DIR] [--keys KEYDIR] [--repo REPODIR] [--mqtt URL]
      run the control plane (default 127.0.0.1:8480; OUTPOST_OPERATOR_TOKEN is the admin token); the
      online keys come from KEYDIR (outpost keys init) or <data-dir>/keys, the TUF repository from REPODIR or <data-dir>/tuf`;

/** `outpost serve`: runs until SIGINT/SIGTERM, then stops gracefully within 5 s or exits anyway. */
export async function runServe(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      keys: { type: 'string' },
      repo: { type: 'string' },
      mqtt: { type: 'string' },
      'log-level': { type: 'string' },
    },
  });
  const overrides: Partial<ControlPlaneConfigInput> = {};
  if (values.host !== undefined) overrides.host = values.host;
  if (values.port !== undefined) overrides.port = Number(values.port);
  if (values['data-dir'] !== undefined) overrides.dataDir = values['data-dir'];
  if (values.mqtt !== undefined) overrides.mqtt = { url: values.mqtt };
  if (values.keys !== undefined) overrides.keysDir = values.keys;
  if (values.repo !== undefined) overrides.tuf = { dir: values.repo };
  if (values['log-level'] !== undefined) overrides.log = { level: values['log-level'] as 'info' };
  const config = loadControlPlaneConfig({
    ...(values.config === undefined ? {} : { file: values.config }),
    env: process.env,
    overrides,
  });
  const cp = createControlPlane(config);
  await cp.start();
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      cp.log.info({ signal }, 'stopping');
      const force = setTimeout(() => {
        cp.log.error('did not stop within 5 s; exiting');
        process.exit(1);
      }, 5_000);
      force.unref();
      cp.stop().then(resolve, resolve);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  return 0;
}
