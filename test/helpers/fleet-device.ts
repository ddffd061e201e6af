import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../agent/config.ts';
import type { LoadOptions, WorkerPool } from '../../agent/runtime/pool.ts';
import { ModelRegistry } from '../../agent/runtime/registry.ts';
import { SyncClient } from '../../agent/sync/sync-client.ts';
import { UpdaterBridge } from '../../agent/sync/updater-bridge.ts';
import { Updater } from '../../agent/updater/updater.ts';
import { createJsonLogger, type Logger } from '../../shared/log.ts';
import { OUTPOST_VERSION } from '../../shared/version.ts';
import { tempDir } from './tmp.ts';

/**
 * One device of a fleet test: the agent's real sync client, updater (tuf-js trust, director
 * checks, resumable download, staged load, sample check, atomic switch) and model registry,
 * without the MQTT uplink, outbox and HTTP API. Twenty full agents would each start their own
 * inference worker; here the devices share one worker pool through a view that keeps their
 * model keys apart, so 20 devices fit on two cores while every install still runs its sample
 * check in onnxruntime.
 */
export class FleetDevice {
  readonly dir = tempDir('fleet-device');
  readonly sync: SyncClient;
  readonly registry: ModelRegistry;
  updater: Updater | undefined;
  private readonly log: Logger;

  constructor(
    readonly id: string,
    url: string,
    token: string,
    pool: WorkerPool,
    pinnedRoot: string,
  ) {
    this.log = createJsonLogger({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' }).child({ device: id });
    // The registry loads, unloads and runs by key (and schedules by the pool's worker count):
    // prefix the keys with the device id, pass the rest through.
    const view = {
      load: (key: string, path: string, options?: LoadOptions) => pool.load(`${id}/${key}`, path, options),
      unload: (key: string) => pool.unload(`${id}/${key}`),
      run: (key: string, feeds: Parameters<WorkerPool['run']>[1], outputs?: string[]) =>
        pool.run(`${id}/${key}`, feeds, outputs),
      get workerCount() {
        return pool.workerCount;
      },
      sessionStats: () => pool.sessionStats(),
    } as unknown as WorkerPool;
    this.registry = new ModelRegistry(view, this.log, 1);
    const config = loadConfig({
      overrides: {
        deviceId: id,
        dataDir: this.dir,
        sync: {
          enabled: true,
          url,
          enrolmentToken: token,
          pollIntervalMs: 150,
          backoffMinMs: 50,
          backoffMaxMs: 500,
        },
        updates: { enabled: true, pinnedRoot, pollIntervalMs: 3_600_000 },
      },
    });
    this.sync = new SyncClient({
      ...config.sync,
      deviceId: id,
      credentialPath: join(this.dir, 'sync', 'credential.json'),
      arch: process.arch,
      agentVersion: OUTPOST_VERSION,
      handler: new UpdaterBridge(() => this.updater, this.registry),
      log: this.log,
      onEnrolled: async (cred) => {
        const updater = new Updater({
          config: { ...config.updates, token: cred.credential },
          deviceId: id,
          dataDir: this.dir,
          registry: this.registry,
          log: this.log,
          arch: process.arch,
          agentVersion: OUTPOST_VERSION,
        });
        await updater.prepareBoot();
        this.updater = updater;
      },
    });
  }

  static pinRoot(json: string): string {
    const path = join(tempDir('pinned-root'), 'root.json');
    writeFileSync(path, json);
    return path;
  }

  version(model: string): string | undefined {
    return this.registry.current(model)?.version;
  }

  async stop(): Promise<void> {
    await this.sync.stop();
    await this.updater?.stop();
  }
}
