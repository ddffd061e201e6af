import { AdminClient } from '../../cloud-sync/client/admin-client.ts';
import { type ControlPlane, createControlPlane } from '../../cloud-sync/control-plane.ts';
import type { RolloutStatus } from '../../cloud-sync/rollout/engine.ts';
import { type ControlPlaneConfigInput, loadControlPlaneConfig } from '../../cloud-sync/server/config.ts';
import { bootstrapRepository, type RepoKeys } from '../../cloud-sync/tuf/bootstrap.ts';
import { createJsonLogger } from '../../shared/log.ts';
import { waitFor } from './agent.ts';
import { tempDir } from './tmp.ts';

export const OPERATOR_TOKEN = 'test-operator-token-0123456789';

/** A clock tests move by hand: soak times and device timeouts pass in milliseconds of real time. */
export class FakeClock {
  /** Starts at the real time: TUF clients in the same test check expiry against the real clock. */
  constructor(public t = Date.now()) {}
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

export interface TestControlPlane {
  cp: ControlPlane;
  client: AdminClient;
  keys: RepoKeys;
  clock: FakeClock;
  dataDir: string;
  /** Stops and starts a new control plane process-part over the same files (a restart). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** The real control plane on an ephemeral loopback port over a temp SQLite file and TUF repository. */
export async function startControlPlane(
  options: { clock?: FakeClock; overrides?: Partial<ControlPlaneConfigInput> } = {},
): Promise<TestControlPlane> {
  const dataDir = tempDir('control-plane');
  const keys = await bootstrapRepository(dataDir);
  const clock = options.clock ?? new FakeClock();
  let port = 0;
  const make = () => {
    const config = loadControlPlaneConfig({
      overrides: {
        port,
        dataDir,
        operatorToken: OPERATOR_TOKEN,
        rollouts: { tickMs: 50 },
        log: { level: 'silent' },
        ...options.overrides,
      },
    });
    return createControlPlane(config, {
      logger: createJsonLogger({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' }),
      now: clock.now,
      keys: { snapshot: [keys.snapshot], timestamp: [keys.timestamp], director: [keys.director] },
    });
  };
  const t: TestControlPlane = {
    cp: make(),
    client: undefined as unknown as AdminClient,
    keys,
    clock,
    dataDir,
    async restart() {
      await t.cp.stop();
      t.cp = make();
      await t.cp.start();
    },
    async stop() {
      await t.cp.stop();
    },
  };
  await t.cp.start();
  port = t.cp.port;
  t.client = new AdminClient(t.cp.url, OPERATOR_TOKEN);
  return t;
}

export function rolloutStatus(t: TestControlPlane, id: string): Promise<RolloutStatus> {
  return t.client.get<RolloutStatus>(`/v1/admin/rollouts/${id}`);
}

/** Runs a rollout forward until `until` holds: whenever a wave is soaking, moves the clock past the soak. */
export async function driveRollout(
  t: TestControlPlane,
  id: string,
  until: (s: RolloutStatus) => boolean,
  what: string,
): Promise<RolloutStatus> {
  let last: RolloutStatus | undefined;
  await waitFor(
    async () => {
      last = await rolloutStatus(t, id);
      if (until(last)) return true;
      if (last.rollout.soakStartedAt !== null) t.clock.advance(last.rollout.soakMs + 1);
      return false;
    },
    what,
    30_000,
  );
  return last as RolloutStatus;
}
