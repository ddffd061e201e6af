import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AdminClient } from '../../cloud-sync/client/admin-client.ts';
import { publishBundle } from '../../cloud-sync/client/publish.ts';
import { type ControlPlane, createControlPlane } from '../../cloud-sync/control-plane.ts';
import type { RolloutStatus } from '../../cloud-sync/rollout/engine.ts';
import { loadControlPlaneConfig } from '../../cloud-sync/server/config.ts';
import { bootstrapRepository, type RepoKeys } from '../../cloud-sync/tuf/bootstrap.ts';
import { createJsonLogger } from '../../shared/log.ts';

/** The demo's control plane: a fresh TUF repository, the real control plane, an admin client. */
export interface DemoFleet {
  cp: ControlPlane;
  client: AdminClient;
  keys: RepoKeys;
  pinnedRoot: string;
  stop(): Promise<void>;
}

export async function startDemoFleet(dataDir: string, port: number, brokerUrl: string): Promise<DemoFleet> {
  const cpDir = join(dataDir, 'control-plane');
  const keys = await bootstrapRepository(cpDir);
  const token = `demo-operator-${Math.random().toString(36).slice(2)}`;
  const config = loadControlPlaneConfig({
    overrides: {
      port,
      dataDir: cpDir,
      operatorToken: token,
      mqtt: { url: brokerUrl },
      rollouts: { tickMs: 250 },
    },
  });
  const cp = createControlPlane(config, {
    logger: createJsonLogger({ level: process.env.OUTPOST_LOG ?? 'warn' }),
  });
  await cp.start();
  const client = new AdminClient(cp.url, token);
  const pinnedRoot = join(dataDir, 'pinned-root.json');
  writeFileSync(pinnedRoot, await (await fetch(`${cp.url}/tuf/metadata/1.root.json`)).text());
  return { cp, client, keys, pinnedRoot, stop: () => cp.stop() };
}

export function publish(fleet: DemoFleet, bundleDir: string): Promise<{ name: string; version: string }> {
  return publishBundle({ client: fleet.client, bundleDir, targetsKeys: fleet.keys.targets });
}

/** Follows a rollout, printing each new event, until it completes or aborts (or `stopped()` says so). */
export async function followRollout(
  fleet: DemoFleet,
  id: string,
  print: (line: string) => void,
  stopped: () => boolean,
): Promise<RolloutStatus | undefined> {
  let seen = 0;
  while (!stopped()) {
    const s = await fleet.client.get<RolloutStatus>(`/v1/admin/rollouts/${id}`).catch(() => undefined);
    if (s === undefined) return undefined;
    for (const e of s.events.slice(seen))
      print(`${e.type.padEnd(18)} ${e.deviceId === null ? '' : `${e.deviceId}: `}${e.reason}`);
    seen = s.events.length;
    if (s.rollout.state === 'completed' || s.rollout.state === 'aborted') return s;
    await new Promise((r) => setTimeout(r, 500));
  }
  return undefined;
}
