#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { errorMessage, isOutpostError } from '../shared/errors.ts';
import { OUTPOST_VERSION } from '../shared/version.ts';
import { loadConfig } from './config.ts';
import { runUntilSignal } from './lifecycle.ts';
import { createAgent } from './main.ts';

const USAGE = `outpost-agent ${OUTPOST_VERSION}

Usage:
  outpost-agent run [--config FILE]     run the agent (the systemd service runs this)
  outpost-agent status [--config FILE]  models, outbox depth, uplink state (asks the running agent)
  outpost-agent --version

Configuration: a JSON file (default /etc/outpost/agent.json when it exists) plus OUTPOST_…
environment variables, e.g. OUTPOST_HTTP__PORT=8471 OUTPOST_UPLINK__URL=mqtts://broker:8883.
`;

const DEFAULT_CONFIG = '/etc/outpost/agent.json';

async function configFile(given: string | undefined): Promise<string | undefined> {
  if (given !== undefined) return given;
  const { existsSync } = await import('node:fs');
  return existsSync(DEFAULT_CONFIG) ? DEFAULT_CONFIG : undefined;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      version: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      json: { type: 'boolean' },
    },
  });
  if (values.version === true) {
    console.log(OUTPOST_VERSION);
    return 0;
  }
  const command = positionals[0];
  if (values.help === true || command === undefined) {
    console.log(USAGE);
    return command === undefined && values.help !== true ? 2 : 0;
  }
  const file = await configFile(values.config);
  const config = loadConfig({ ...(file === undefined ? {} : { file }), env: process.env });
  switch (command) {
    case 'run': {
      const agent = createAgent(config);
      await runUntilSignal(agent, { shutdownDeadlineMs: 20_000 });
      return -1;
    }
    case 'status': {
      const headers: Record<string, string> = {};
      if (config.http.token !== undefined) headers.authorization = `Bearer ${config.http.token}`;
      const host = config.http.host === '0.0.0.0' ? '127.0.0.1' : config.http.host;
      const res = await fetch(`http://${host}:${config.http.port}/v1/agent/status`, { headers });
      const status = (await res.json()) as Record<string, unknown>;
      console.log(JSON.stringify(status, null, 2));
      return res.ok ? 0 : 1;
    }
    default:
      console.error(`unknown command ${command}\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    console.error(isOutpostError(err) ? `${err.code}: ${err.message}` : `error: ${errorMessage(err)}`);
    process.exitCode = isOutpostError(err, 'CONFIG_INVALID') ? 78 : 1;
  },
);
