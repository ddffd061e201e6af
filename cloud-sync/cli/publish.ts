import { parseArgs } from 'node:util';
import { readKeyFile } from '../../shared/tuf/index.ts';
import { publishBundle } from '../client/publish.ts';
import { CLIENT_OPTIONS, clientFrom, progressBar } from './common.ts';
import { KeyStore } from './key-store.ts';

export const PUBLISH_USAGE = `  outpost publish BUNDLE_DIR (--keys KEYDIR | --key TARGETS.key [--key …]) [--expires-days 90]
      upload a bundle and the next targets metadata, signed here with the offline targets key(s)`;

export async function runPublish(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...CLIENT_OPTIONS,
      key: { type: 'string', multiple: true },
      keys: { type: 'string' },
      'expires-days': { type: 'string' },
    },
  });
  const dir = positionals[0];
  if (
    dir === undefined ||
    (values.keys === undefined && (values.key === undefined || values.key.length === 0))
  ) {
    console.error(`usage:\n${PUBLISH_USAGE}`);
    return 2;
  }
  const keys =
    values.keys !== undefined
      ? await (await KeyStore.open(values.keys)).signers('targets')
      : await Promise.all((values.key ?? []).map((k) => readKeyFile(k)));
  const client = clientFrom(values);
  const result = await publishBundle({
    client,
    bundleDir: dir,
    targetsKeys: keys,
    ...(values['expires-days'] === undefined ? {} : { expiresDays: Number(values['expires-days']) }),
    onProgress: (() => {
      const bars = new Map<string, (s: number, t: number) => void>();
      return (file: string, sent: number, total: number) => {
        let bar = bars.get(file);
        if (bar === undefined) {
          bar = progressBar(file.split('/').pop() ?? file);
          bars.set(file, bar);
        }
        bar(sent, total);
      };
    })(),
  });
  if (values.json === true) console.log(JSON.stringify(result));
  else console.log(`published ${result.name}@${result.version} (targets v${result.targetsVersion})`);
  return 0;
}
