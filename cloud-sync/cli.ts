#!/usr/bin/env node
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { buildBundle, type ManifestDraft } from '../shared/bundle/build.ts';
import { readBundle } from '../shared/bundle/read.ts';
import { errorMessage, isOutpostError } from '../shared/errors.ts';
import { OUTPOST_VERSION } from '../shared/version.ts';
import { DEVICES_USAGE, runDevices } from './cli/devices.ts';
import { PUBLISH_USAGE, runPublish } from './cli/publish.ts';
import { ROLLOUT_USAGE, runRollout } from './cli/rollout.ts';
import { runServe, SERVE_USAGE } from './cli/serve.ts';

const USAGE = `outpost ${OUTPOST_VERSION} — the operator CLI

Usage:
  outpost bundle build --model MODEL.onnx --manifest DRAFT.json --out DIR
      make a bundle: digest, size and signature come from the model; the draft's sample must run
  outpost bundle inspect DIR
      print a bundle's manifest after checking the model file against it
${SERVE_USAGE}
${PUBLISH_USAGE}
${DEVICES_USAGE}
${ROLLOUT_USAGE}
`;

/** Control-plane subcommands parse their own options. */
const SUBCOMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  serve: runServe,
  publish: runPublish,
  devices: runDevices,
  rollout: runRollout,
};

async function main(argv: string[]): Promise<number> {
  const sub = argv[0] === undefined ? undefined : SUBCOMMANDS[argv[0]];
  if (sub !== undefined) return sub(argv.slice(1));
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: 'string' },
      manifest: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
    },
  });
  if (values.version === true) {
    console.log(OUTPOST_VERSION);
    return 0;
  }
  const [group, verb, ...rest] = positionals;
  if (values.help === true || group === undefined) {
    console.log(USAGE);
    return values.help === true ? 0 : 2;
  }
  if (group === 'bundle' && verb === 'build') {
    if (values.model === undefined || values.manifest === undefined || values.out === undefined) {
      console.error('bundle build needs --model, --manifest and --out');
      return 2;
    }
    const draft = JSON.parse(await readFile(values.manifest, 'utf8')) as ManifestDraft;
    const manifest = await buildBundle(values.model, draft, values.out);
    console.log(
      `built ${manifest.name}@${manifest.version} (release ${manifest.releaseCounter}) in ${values.out}`,
    );
    console.log(`  model ${manifest.model.size} bytes, sha256 ${manifest.model.sha256}`);
    return 0;
  }
  if (group === 'bundle' && verb === 'inspect') {
    const dir = rest[0];
    if (dir === undefined) {
      console.error('bundle inspect needs a bundle directory');
      return 2;
    }
    const bundle = await readBundle(dir);
    const m = bundle.manifest;
    if (values.json === true) {
      console.log(JSON.stringify(m, null, 2));
      return 0;
    }
    console.log(`${m.name}@${m.version}  release ${m.releaseCounter}`);
    console.log(`  model     ${m.model.file}  ${m.model.size} bytes  sha256 ${m.model.sha256} (verified)`);
    for (const i of m.signature.inputs)
      console.log(`  input     ${i.name}  ${i.datatype} [${i.shape.join(', ')}]`);
    for (const o of m.signature.outputs)
      console.log(`  output    ${o.name}  ${o.datatype} [${o.shape.join(', ')}]`);
    console.log(`  compat    ${m.compat.arch.join(', ')}; agent ≥ ${m.compat.minAgentVersion}`);
    if (m.pipeline !== undefined)
      console.log(
        `  pipeline  ${m.pipeline.source.kind} → window ${m.pipeline.window.size}/${m.pipeline.window.hop} → ${m.pipeline.postprocess.kind}`,
      );
    console.log(
      `  sample    ${Object.keys(m.sample.inputs).join(', ')} → ${Object.keys(m.sample.outputs).join(', ')}`,
    );
    return 0;
  }
  console.error(`unknown command: ${positionals.join(' ')}\n\n${USAGE}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(isOutpostError(err) ? `${err.code}: ${err.message}` : `error: ${errorMessage(err)}`);
    process.exitCode = 1;
  },
);
