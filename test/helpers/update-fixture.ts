import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type AgentConfigInput, loadConfig } from '../../agent/config.ts';
import { type Agent, type AgentDeps, createAgent } from '../../agent/main.ts';
import { exampleBundles } from '../../deploy/examples/example-bundles.ts';
import { sampleInputs } from '../../shared/bundle/sample.ts';
import { createJsonLogger } from '../../shared/log.ts';
import {
  buildRoot,
  type DirectorTarget,
  directorTargetsForBundle,
  expiresIn,
  generateKey,
  type RoleName,
  type SigningKey,
  signDirectorDocument,
  signMetadata,
  TufRepository,
} from '../../shared/tuf/index.ts';
import { type StaticServer, serveDirectory } from './static-server.ts';
import { tempDir } from './tmp.ts';

export const DEVICE = 'test-device';

const bundleCache = new Map<string, ReturnType<(typeof exampleBundles)['mlp']>>();
let bundlesDir: string | undefined;
function sharedBundles(): string {
  bundlesDir ??= tempDir('upd-bundles');
  return bundlesDir;
}
export const MODEL = 'mlp-classifier';

export interface Keys {
  root: SigningKey[];
  targets: SigningKey[];
  snapshot: SigningKey[];
  timestamp: SigningKey[];
  director: SigningKey[];
}

/**
 * A TUF repository plus director documents served over HTTP from a temp directory, built with
 * shared/tuf, and agents pointed at it: what the control plane will be, until it exists.
 */
export class UpdateFixture {
  readonly dir = tempDir('upd-repo');
  readonly repo = new TufRepository(join(this.dir, 'repo'));
  readonly keys: Keys = {
    root: [generateKey(), generateKey(), generateKey()],
    targets: [generateKey(), generateKey()],
    snapshot: [generateKey()],
    timestamp: [generateKey()],
    director: [generateKey()],
  };
  server!: StaticServer;
  directorVersion = 0;
  agents: Agent[] = [];

  get signers() {
    return { targets: this.keys.targets, snapshot: this.keys.snapshot, timestamp: this.keys.timestamp };
  }

  get pinnedRoot(): string {
    return join(this.repo.metadataDir, '1.root.json');
  }

  async start(): Promise<this> {
    const roles = {} as Record<RoleName, { keys: SigningKey[]; threshold: number }>;
    roles.root = { keys: this.keys.root, threshold: 2 };
    roles.targets = { keys: this.keys.targets, threshold: 2 };
    for (const r of ['snapshot', 'timestamp', 'director'] as const)
      roles[r] = { keys: this.keys[r], threshold: 1 };
    const root = signMetadata(
      buildRoot({ version: 1, expires: expiresIn(365), roles }),
      this.keys.root.slice(0, 2),
    );
    await this.repo.init(root, this.signers);
    await mkdir(join(this.repo.dir, 'director'), { recursive: true });
    this.server = await serveDirectory(this.repo.dir);
    return this;
  }

  /** Builds (once per test process) and publishes an example bundle: new targets, snapshot, timestamp. */
  async publish(kind: 'mlp' | 'mlpV2' | 'mlpBroken', version?: string, releaseCounter?: number) {
    const key = `${kind}@${version ?? ''}@${releaseCounter ?? ''}`;
    let built = bundleCache.get(key);
    if (built === undefined) {
      built =
        version === undefined
          ? exampleBundles[kind](sharedBundles())
          : exampleBundles[kind](join(sharedBundles(), key), version, releaseCounter);
      bundleCache.set(key, built);
    }
    const b = await built;
    await this.repo.publishBundle(b.dir, this.signers);
    return b;
  }

  /** Signs and serves the director's desired state naming these bundles. */
  async direct(
    bundles: Array<[name: string, version: string]>,
    extra: { targets?: DirectorTarget[]; expiresDays?: number } = {},
  ) {
    const targets =
      extra.targets ?? bundles.flatMap(([n, v]) => directorTargetsForBundle(this.repo.targets.signed, n, v));
    const doc = signDirectorDocument(
      {
        deviceId: DEVICE,
        version: ++this.directorVersion,
        expires: expiresIn(extra.expiresDays ?? 1),
        targets,
      },
      this.keys.director,
    );
    await this.serveDirector(doc);
    return doc;
  }

  async serveDirector(doc: unknown): Promise<void> {
    await writeFile(join(this.repo.dir, 'director', `${DEVICE}.json`), JSON.stringify(doc));
  }

  /** The config overrides of an agent pointed at this repository (JSON, so a child process can take it). */
  agentConfig(overrides: AgentConfigInput = {}): AgentConfigInput {
    return {
      deviceId: DEVICE,
      dataDir: tempDir('agent'),
      http: { port: 0 },
      runtime: { workers: 1 },
      uplink: { enabled: false },
      sensors: { mqtt: 'off' },
      ...overrides,
      updates: {
        enabled: true,
        repositoryUrl: this.server.url,
        directorUrl: `${this.server.url}/director/{deviceId}.json`,
        pinnedRoot: this.pinnedRoot,
        pollIntervalMs: 3_600_000,
        retries: 2,
        backoffMinMs: 20,
        backoffMaxMs: 100,
        connectTimeoutMs: 2_000,
        idleTimeoutMs: 2_000,
        rateWindowMs: 600,
        minBytesPerSec: 2_000,
        ...overrides.updates,
      },
    };
  }

  agent(overrides: AgentConfigInput = {}, deps: AgentDeps = {}): Agent {
    const config = loadConfig({ overrides: this.agentConfig(overrides) });
    const a = createAgent(config, {
      logger: createJsonLogger({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' }),
      ...deps,
    });
    this.agents.push(a);
    return a;
  }

  /** Publishes mlp 1.0.0, directs the device to it and starts an agent that installs it through the updater. */
  async deviceServingV1(overrides: AgentConfigInput = {}, deps: AgentDeps = {}): Promise<Agent> {
    await this.publish('mlp');
    await this.direct([[MODEL, '1.0.0']], { expiresDays: 30 });
    const agent = this.agent(overrides, deps);
    await agent.start();
    const first = await agent.updater!.checkNow();
    if (first.failed.length > 0) throw new Error(`installing 1.0.0 failed: ${JSON.stringify(first.failed)}`);
    return agent;
  }

  async stop(): Promise<void> {
    for (const a of this.agents) await a.stop();
    await this.server?.close();
  }
}

/** The example MLP's sample, run through the agent's serving (unversioned) model. */
export async function inferOk(agent: Agent): Promise<string> {
  const current = agent.registry.current(MODEL);
  if (current === undefined) throw new Error('no current model');
  const r = await agent.registry.infer(MODEL, undefined, sampleInputs(current.bundle.manifest));
  if (Object.keys(r.outputs).length === 0) throw new Error('no outputs');
  return r.model.version;
}

/** The `evt` messages the agent committed to its outbox, as {type, body}. */
export async function events(agent: Agent): Promise<Array<{ type: string; body: Record<string, unknown> }>> {
  // Rows are handed out only once on disk: wait for the events just committed.
  await agent.outbox.durable();
  return agent.outbox
    .fetch('control', 0, 10_000)
    .filter((m) => m.topic.includes('/evt/'))
    .map((m) => ({
      type: m.topic.slice(m.topic.lastIndexOf('/') + 1),
      body: (JSON.parse(m.payload.toString()) as { body: Record<string, unknown> }).body,
    }));
}
