#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { errorMessage, isOutpostError } from '../shared/errors.ts';
import { OUTPOST_VERSION } from '../shared/version.ts';
import { type AgentConfig, loadConfig } from './config.ts';

const USAGE = `outpost-agent ${OUTPOST_VERSION}

Usage:
  outpost-agent run [--config FILE]            run the agent (the systemd service runs this)
  outpost-agent status [--config FILE] [--json] models, outbox depth, uplink state, last sync
  outpost-agent doctor [--config FILE] [--json] check config, data dir, storage, onnxruntime,
                                               broker, control plane and clock; exit 1 on a failure
  outpost-agent --version

Configuration: a JSON file (default /etc/outpost/agent.json when it exists) plus OUTPOST_…
environment variables, e.g. OUTPOST_HTTP__PORT=8471 OUTPOST_UPLINK__URL=mqtts://broker:8883.
SIGHUP reloads log.level; other changes need a restart (the agent logs which).
`;

const DEFAULT_CONFIG = '/etc/outpost/agent.json';

function configFile(given: string | undefined): string | undefined {
  if (given !== undefined) return given;
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
  const file = configFile(values.config);
  const load = (): Readonly<AgentConfig> =>
    loadConfig({ ...(file === undefined ? {} : { file }), env: process.env });
  switch (command) {
    // Each command imports what it needs: the service process should not hold the doctor's
    // MQTT client and ONNX builder, nor `doctor` the whole agent.
    case 'run': {
      const [{ runUntilSignal }, { createLogger }, { createAgent }, { RunState }, { SdNotifier }] =
        await Promise.all([
          import('./lifecycle.ts'),
          import('./log.ts'),
          import('./main.ts'),
          import('./run-state.ts'),
          import('./sd-notify.ts'),
        ]);
      const config = load();
      const logger = createLogger(config.log.level);
      const agent = createAgent(config, { logger });
      await runUntilSignal(agent, {
        shutdownDeadlineMs: config.shutdownDeadlineMs,
        notifier: new SdNotifier({ log: logger.child({ component: 'systemd' }) }),
        runState: new RunState(config.dataDir),
        loadConfig: load,
        reloaders: [
          {
            keys: ['log.level'],
            apply: (next) => {
              logger.level = next.log.level;
            },
          },
        ],
      });
      return -1;
    }
    case 'status': {
      const { fetchStatus, formatStatus } = await import('./status-view.ts');
      const status = await fetchStatus(load());
      console.log(values.json === true ? JSON.stringify(status, null, 2) : formatStatus(status));
      return 0;
    }
    case 'doctor': {
      const { formatReport, runDoctor } = await import('./doctor.ts');
      const report = await runDoctor({
        loadConfig: load,
        configSource: file ?? '(defaults and environment)',
      });
      console.log(values.json === true ? JSON.stringify(report, null, 2) : formatReport(report));
      return report.ok ? 0 : 1;
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
    // 78 is EX_CONFIG; the unit's RestartPreventExitStatus keeps systemd from looping on it.
    process.exitCode = isOutpostError(err, 'CONFIG_INVALID') ? 78 : 1;
  },
);
