import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { buildBundle, type ManifestDraft } from '../../shared/bundle/build.ts';
import { readBundle } from '../../shared/bundle/read.ts';
import { OutpostError } from '../../shared/errors.ts';
import { TufRepository } from '../../shared/tuf/index.ts';
import { KeyStore } from './key-store.ts';

export const BUNDLE_USAGE = `  outpost bundle build --model MODEL.onnx --manifest DRAFT.json --out DIR [--no-align]
      make a bundle: digest, size and signature come from the model; the draft's sample must run.
      Large weights are aligned so devices map them from the file (a padding field ONNX readers
      skip); --no-align keeps the model byte for byte
  outpost bundle inspect DIR [--json]
      print a bundle's manifest after checking the model file against it
  outpost bundle sign DIR --keys KEYDIR --repo REPODIR
      add the bundle to the TUF repository as two targets (manifest + model), signed with the
      targets keys, and re-sign snapshot and timestamp
`;

/** `outpost bundle …` */
export async function bundleCommand(verb: string | undefined, argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: 'string' },
      manifest: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean' },
      keys: { type: 'string' },
      repo: { type: 'string' },
      'no-align': { type: 'boolean' },
    },
  });
  if (verb === 'build') {
    if (values.model === undefined || values.manifest === undefined || values.out === undefined) {
      console.error('bundle build needs --model, --manifest and --out');
      return 2;
    }
    let draft: ManifestDraft;
    try {
      draft = JSON.parse(await readFile(values.manifest, 'utf8')) as ManifestDraft;
    } catch (err) {
      throw new OutpostError('BAD_REQUEST', `cannot read the draft ${values.manifest}: ${String(err)}`);
    }
    let aligned: number | undefined;
    const manifest = await buildBundle(values.model, draft, values.out, {
      alignWeights: values['no-align'] !== true,
      onLayout: (layout) => {
        aligned = layout.aligned;
        if (layout.error !== undefined)
          console.error(`warning: the model is bundled as it is, not laid out for mapping: ${layout.error}`);
      },
    });
    console.log(
      `built ${manifest.name}@${manifest.version} (release ${manifest.releaseCounter}) in ${values.out}`,
    );
    console.log(`  model ${manifest.model.size} bytes, sha256 ${manifest.model.sha256}`);
    if (aligned !== undefined)
      console.log(`  ${aligned} large weight tensor(s) aligned for mapping on the device`);
    return 0;
  }
  if (verb === 'inspect') {
    const dir = positionals[0];
    if (dir === undefined) {
      console.error('bundle inspect needs a bundle directory');
      return 2;
    }
    const m = (await readBundle(dir)).manifest;
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
  if (verb === 'sign') {
    const dir = positionals[0];
    if (dir === undefined || values.keys === undefined || values.repo === undefined) {
      console.error('bundle sign needs a bundle directory, --keys and --repo');
      return 2;
    }
    const keys = await KeyStore.open(values.keys);
    const repo = await new TufRepository(values.repo).load();
    const signers = {
      targets: await keys.signers('targets', repo.root),
      snapshot: await keys.signers('snapshot', repo.root),
      timestamp: await keys.signers('timestamp', repo.root),
    };
    const { manifest, targets } = await repo.publishBundle(dir, signers);
    console.log(
      `signed ${manifest.name}@${manifest.version} (release ${manifest.releaseCounter}) into ${values.repo}: targets v${repo.targets.signed.version}`,
    );
    for (const t of targets) console.log(`  ${t.path}  ${t.length} bytes  sha256 ${t.hashes['sha256']}`);
    return 0;
  }
  console.error(`unknown bundle command: ${verb ?? '(none)'}\n\n${BUNDLE_USAGE}`);
  return 2;
}
