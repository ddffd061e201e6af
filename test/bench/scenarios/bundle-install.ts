import { createHash } from 'node:crypto';
import { copyFile, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeBundle } from '../../../deploy/examples/example-bundles.ts';
import { paddedModel } from '../../../shared/onnx/models.ts';
import { UpdateFixture } from '../../helpers/update-fixture.ts';
import { BenchChild } from '../lib/child.ts';
import type { Scenario } from '../lib/scenario.ts';
import { interleaved, median } from '../lib/stable.ts';
import { DEFAULT_WORKERS, startAgent } from '../lib/subjects.ts';

const NAME = 'padded-mlp';

function readyVersions(reply: Record<string, unknown>): number {
  const status = reply.status as { models?: Array<{ state: string }> } | undefined;
  return (status?.models ?? []).filter((m) => m.state === 'READY').length;
}

/** The floor an install is judged against: hash the file and make a durable copy of it. */
async function hashAndCopy(src: string, dst: string): Promise<number> {
  const t0 = performance.now();
  const bytes = await readFile(src);
  createHash('sha256').update(bytes).digest('hex');
  await copyFile(src, dst);
  const fh = await open(dst, 'r');
  await fh.sync();
  await fh.close();
  const ms = performance.now() - t0;
  await rm(dst, { force: true });
  return ms;
}

export const bundleInstall: Scenario = {
  name: 'bundle-install',
  description:
    'Verify + install + activate of a 50 MB bundle through the updater as a device runs it (the agent in its ' +
    "own process with the service unit's Node flags and environment): TUF refresh, " +
    'download over loopback HTTP from a mirror in its own process (a device fetches from another machine; a ' +
    "server on the agent's own event loop would take turns with it) that sends files through two reused 1 MiB buffers as a CDN " +
    'does, length and sha256 check, then side by side: the bundle directory made durable (fsync of the ' +
    'model, the manifest and the directory) and the model loaded in every inference worker (the default ' +
    'pool; bundles are built with their large weights aligned, so a worker maps them from the file) with the ' +
    'manifest sample check; then the rename into place + fsync of its parent, the state ' +
    'commit and the switch (the update-activated event is enqueued in the outbox; its commit, the release ' +
    'of the superseded session and the removal of the superseded bundle directory finish after the switch, ' +
    'and are waited for, untimed, before the baseline runs). Baseline: ' +
    'sha256 of the same model file plus a copy made durable with fsync, in the same process, interleaved.',
  async run(ctx) {
    const megabytes = ctx.quick ? 4 : 50;
    const model = paddedModel(megabytes * 1024 * 1024);
    const fixture = await new UpdateFixture().start();
    ctx.defer(() => fixture.stop());
    const mirror = await BenchChild.start(
      fileURLToPath(new URL('../fixtures/static-mirror.ts', import.meta.url)),
      [fixture.repo.dir],
      { nodeArgs: ['--import', 'tsx'] },
    );
    ctx.defer(() => mirror.stop());
    const mirrorUrl = String(mirror.readyInfo['url']);
    const bundlesDir = join(ctx.tmpDir, 'bundles');
    let release = 0;
    let lastModelPath = '';
    const publishNext = async () => {
      release++;
      const b = await writeBundle(
        model,
        { name: NAME, version: `1.0.${release}`, releaseCounter: release },
        bundlesDir,
      );
      await fixture.repo.publishBundle(b.dir, fixture.signers);
      lastModelPath = join(b.dir, b.manifest.model.file);
      return b.manifest.version;
    };
    // The device starts as one in the field does: its director names a bundle, the first check
    // installs it, and the update loop sleeps until the next poll. Without a director document
    // the loop would retry every few ms (the fixture's test backoff) and commit an update-failed
    // event each time, all through the measured installs.
    await fixture.direct([[NAME, await publishNext()]], { expiresDays: 30 });
    // The agent runs as the service does (its own process, the unit's Node flags and environment).
    const configPath = join(ctx.tmpDir, 'agent.json');
    const config = fixture.agentConfig({
      log: { level: 'warn' },
      runtime: { workers: 0 },
      updates: { repositoryUrl: mirrorUrl, directorUrl: `${mirrorUrl}/director/{deviceId}.json` },
    });
    await writeFile(configPath, JSON.stringify(config));
    const agent = await startAgent(ctx, configPath);
    const first = await agent.command('check', {}, 120_000);
    const installed = first.installed as unknown[] | undefined;
    const failed = first.failed as unknown[] | undefined;
    if (failed === undefined || failed.length > 0 || installed?.length !== 1)
      throw new Error(`the first install through the director failed: ${JSON.stringify(failed)}`);
    const install = async () => {
      const version = await publishNext();
      // Timed in the agent, from the call to the switch; the reply waits for what runs after it.
      const reply = await agent.command('install', { name: NAME, version }, 120_000);
      if (reply.current !== version) throw new Error(`${NAME}@${version} did not become current`);
      return Number(reply.ms);
    };
    const result = await interleaved(
      [
        { name: 'install', window: install },
        { name: 'sha256+copy', window: () => hashAndCopy(lastModelPath, join(ctx.tmpDir, 'copy.onnx')) },
      ],
      {
        metric: (ms) => ms,
        minWindows: Math.min(ctx.minWindows, 4),
        maxWindows: ctx.quick ? 3 : 8,
        tolerance: 0.15,
        warmup: async (side) => {
          if (side === 'install') await install();
        },
      },
    );
    const subject = median(result.last[0] ?? []);
    const baseline = median(result.last[1] ?? []);
    ctx.log(`install ${subject.toFixed(0)} ms vs sha256+copy ${baseline.toFixed(0)} ms (${megabytes} MB)`);
    ctx.record({
      metric: `install ${megabytes} MB bundle`,
      value: subject,
      unit: 'ms',
      baseline,
      target: { on: 'ratio', op: '<=', limit: 2 },
      note: `${readyVersions(await agent.command('status'))} model version(s) loaded after the last switch (older ones unloaded); workers: ${DEFAULT_WORKERS} (default)`,
      stable: result.stable,
    });
  },
};
