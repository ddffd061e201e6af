import { mkdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { Updater } from 'tuf-js';
import {
  type DesiredStateHandler,
  type InstalledModelReport,
  type InstallOutcome,
  SyncClient,
} from '../../agent/sync/sync-client.ts';
import { runSample } from '../../shared/bundle/build.ts';
import { parseManifest } from '../../shared/bundle/read.ts';
import { compareSample, sampleInputs } from '../../shared/bundle/sample.ts';
import { parseRoot, roleKeysFromRoot, verifyDirectorDocument } from '../../shared/tuf/index.ts';
import { tempDir } from './tmp.ts';

/**
 * A device for fleet tests: the real SyncClient (enrolment, ETag polling, backoff, reports)
 * in front of an installer that does the device's trust work for real — tuf-js refresh against
 * the control plane's repository from a pinned root, director signature and device checks,
 * length/hash match between director and TUF, download through tuf-js, and the bundle's
 * sample check run in onnxruntime. It stands in for agent/updater (issue 5) until that lands:
 * it installs into memory instead of swapping a live model in a worker.
 */
export class FleetDevice implements DesiredStateHandler {
  readonly dir = tempDir('fleet-device');
  readonly sync: SyncClient;
  private readonly running = new Map<string, InstalledModelReport>();
  private rootJson: string | undefined;
  applied = 0;

  constructor(
    readonly id: string,
    private readonly url: string,
    token: string | undefined,
    options: { pollIntervalMs?: number } = {},
  ) {
    this.sync = new SyncClient({
      deviceId: id,
      url,
      enrolmentToken: token,
      credentialPath: join(this.dir, 'credential.json'),
      pollIntervalMs: options.pollIntervalMs ?? 100,
      backoffMinMs: 50,
      backoffMaxMs: 500,
      requestTimeoutMs: 5_000,
      arch: 'x64',
      agentVersion: '0.1.0',
      handler: this,
      log: pino({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' }).child({ device: id }),
    });
  }

  /** Pins the root the way provisioning does: fetched once, trusted from then on. */
  async provision(): Promise<void> {
    const res = await fetch(`${this.url}/tuf/metadata/1.root.json`);
    this.rootJson = await res.text();
    mkdirSync(join(this.dir, 'tuf'), { recursive: true });
    writeFileSync(join(this.dir, 'tuf', 'root.json'), this.rootJson);
  }

  installed(): InstalledModelReport[] {
    return [...this.running.values()];
  }

  version(model: string): string | undefined {
    return this.running.get(model)?.version;
  }

  async apply(document: unknown): Promise<InstallOutcome[]> {
    this.applied++;
    const root = parseRoot(this.rootJson as string);
    const signed = verifyDirectorDocument(document, roleKeysFromRoot(root, 'director'), {
      deviceId: this.id,
      now: new Date(),
    });
    const byModel = new Map<string, typeof signed.targets>();
    for (const t of signed.targets) {
      const model = String(t.custom?.name ?? '');
      byModel.set(model, [...(byModel.get(model) ?? []), t]);
    }
    const outcomes: InstallOutcome[] = [];
    for (const [model, targets] of byModel) {
      const version = String(targets[0]?.custom?.version ?? '');
      if (this.running.get(model)?.version === version) continue;
      try {
        const updater = new Updater({
          metadataDir: join(this.dir, 'tuf'),
          metadataBaseUrl: `${this.url}/tuf/metadata`,
          targetBaseUrl: `${this.url}/tuf/targets`,
          targetDir: join(this.dir, 'targets'),
        });
        await updater.refresh();
        const files: Record<string, string> = {};
        for (const t of targets) {
          const info = await updater.getTargetInfo(t.name);
          if (info === undefined || info.length !== t.length || info.hashes.sha256 !== t.hashes.sha256)
            throw new Error(`${t.name}: TUF does not vouch for what the director names`);
          mkdirSync(join(this.dir, 'targets'), { recursive: true });
          files[String(t.custom?.kind)] = await updater.downloadTarget(
            info,
            join(this.dir, 'targets', `${info.hashes.sha256}`),
          );
        }
        const manifest = parseManifest(JSON.parse(await readFile(files.manifest as string, 'utf8')));
        const outputs = await runSample(await readFile(files.model as string), sampleInputs(manifest));
        const problems = compareSample(outputs, manifest.sample.outputs, manifest.sample.tolerance);
        if (problems.length > 0) throw new Error(`sample check failed: ${problems[0]}`);
        this.running.set(model, {
          name: model,
          version,
          sha256: manifest.model.sha256,
          releaseCounter: manifest.releaseCounter,
          state: 'READY',
        });
        outcomes.push({ model, version, ok: true, detail: 'installed and sample check passed' });
      } catch (err) {
        // The running version stays: a failed install never leaves the device without its model.
        outcomes.push({
          model,
          version,
          ok: false,
          detail: err instanceof Error ? err.message : String(err),
        });
      }
    }
    return outcomes;
  }
}
