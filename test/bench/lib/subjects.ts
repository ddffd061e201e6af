import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentConfigInput } from '../../../agent/config.ts';
import { WorkerPool } from '../../../agent/runtime/pool.ts';
import type { Feeds } from '../../../shared/onnx/models.ts';
import { BenchChild } from './child.ts';
import type { BenchContext } from './scenario.ts';

const UNIT = readFileSync(new URL('../../../deploy/outpost-agent.service', import.meta.url), 'utf8');

/**
 * The Node flags the systemd unit starts the agent with (between the node binary and the
 * script on its ExecStart line): the bench runs the agent the way the service does.
 */
export const SERVICE_NODE_FLAGS: string[] = (() => {
  const exec = /^ExecStart=(.*)$/m.exec(UNIT)?.[1]?.split(/\s+/) ?? [];
  const script = exec.findIndex((arg) => arg.endsWith('cli.js'));
  if (script < 1) throw new Error('deploy/outpost-agent.service has no ExecStart running cli.js');
  return exec.slice(1, script);
})();

/** The unit's Environment= settings (not its EnvironmentFile, which is the operator's). */
export const SERVICE_ENV: Record<string, string> = Object.fromEntries(
  [...UNIT.matchAll(/^Environment=([A-Z_][A-Z0-9_]*)=(.*)$/gm)].map((m) => [m[1] as string, m[2] as string]),
);

/** The agent's default worker count (runtime.workers = 0: one per core but one, at least one). */
export const DEFAULT_WORKERS = WorkerPool.defaultSize(0);

/** An agent config for the bench: loopback ephemeral port, no MQTT (nothing to connect to), quiet logs. */
export async function writeAgentConfig(
  ctx: BenchContext,
  name: string,
  bundles: string[],
  runtime: AgentConfigInput['runtime'] = {},
  logLevel: 'warn' | 'info' = 'warn',
  extra: Partial<AgentConfigInput> = {},
): Promise<string> {
  const config: AgentConfigInput = {
    deviceId: 'bench',
    dataDir: join(ctx.tmpDir, `${name}-data`),
    log: { level: logLevel },
    http: { port: 0 },
    uplink: { enabled: false },
    sensors: { mqtt: 'off' },
    models: { bundles },
    runtime,
    ...extra,
  };
  const path = join(ctx.tmpDir, `${name}.json`);
  await writeFile(path, JSON.stringify(config, null, 2));
  return path;
}

export function fixture(ctx: BenchContext, name: string): string {
  return join(ctx.buildDir, 'test', 'bench', 'fixtures', `${name}.js`);
}

/** The built CLI's "ready" log line: model loaded in every worker, outbox open, HTTP listening. */
export const agentReadyLine = (line: string): boolean => line.includes('"msg":"agent ready"');

/**
 * Starts the agent as systemd runs it, `outpost-agent run --config FILE` from the built JS
 * (the config must log at info for the ready line), and stops it after the scenario.
 */
export async function startService(ctx: BenchContext, configPath: string): Promise<BenchChild> {
  const cli = join(ctx.buildDir, 'agent', 'cli.js');
  const child = await BenchChild.start(cli, ['run', '--config', configPath], {
    ready: agentReadyLine,
    nodeArgs: SERVICE_NODE_FLAGS,
    env: SERVICE_ENV,
  });
  ctx.defer(() => child.stop());
  return child;
}

/** Starts the real agent (built JS) as a child process, with the service's Node flags, and stops it after the scenario. */
export async function startAgent(
  ctx: BenchContext,
  configPath: string,
  nodeArgs: string[] = [],
): Promise<BenchChild> {
  const child = await BenchChild.start(fixture(ctx, 'agent-runner'), [configPath], {
    nodeArgs: [...SERVICE_NODE_FLAGS, ...nodeArgs],
    env: SERVICE_ENV,
  });
  ctx.defer(() => child.stop());
  return child;
}

export async function startFixture(
  ctx: BenchContext,
  name: string,
  args: string[],
  nodeArgs: string[] = [],
): Promise<BenchChild> {
  const child = await BenchChild.start(fixture(ctx, name), args, { nodeArgs });
  ctx.defer(() => child.stop());
  return child;
}

export function portOf(child: BenchChild): number {
  const port = child.readyInfo.port;
  if (typeof port !== 'number') throw new Error('child reported no port');
  return port;
}

/** A V2 JSON infer body for batch-1 example feeds (float inputs only, flat data). */
export function v2Body(feeds: Feeds): Buffer {
  const inputs = Object.entries(feeds).map(([name, t]) => ({
    name,
    datatype: 'FP32',
    shape: t.dims,
    data: Array.from(t.data as Float32Array),
  }));
  return Buffer.from(JSON.stringify({ inputs }));
}
