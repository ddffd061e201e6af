#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { errorMessage, isOutpostError } from '../shared/errors.ts';
import { OUTPOST_VERSION } from '../shared/version.ts';
import { BUNDLE_USAGE, bundleCommand } from './cli/bundle.ts';
import { DEVICES_USAGE, runDevices } from './cli/devices.ts';
import { KEYS_USAGE, keysCommand } from './cli/keys.ts';
import { PUBLISH_USAGE, runPublish } from './cli/publish.ts';
import { ROLLOUT_USAGE, runRollout } from './cli/rollout.ts';
import { runServe, SERVE_USAGE } from './cli/serve.ts';

/** Each command group lives in its own file under cli/; this file only dispatches. */
const groups: Record<
  string,
  {
    usage: string;
    run: (verb: string | undefined, argv: string[]) => Promise<number>;
    /** Parses its own arguments, verb included (its options take values the dispatcher cannot know). */
    raw?: boolean;
  }
> = {
  keys: { usage: KEYS_USAGE, run: keysCommand },
  bundle: { usage: BUNDLE_USAGE, run: bundleCommand },
  serve: { usage: `${SERVE_USAGE}\n`, run: (_v, argv) => runServe(argv), raw: true },
  publish: { usage: `${PUBLISH_USAGE}\n`, run: (_v, argv) => runPublish(argv), raw: true },
  devices: { usage: `${DEVICES_USAGE}\n`, run: (_v, argv) => runDevices(argv), raw: true },
  rollout: { usage: `${ROLLOUT_USAGE}\n`, run: (_v, argv) => runRollout(argv), raw: true },
};

function usage(): string {
  return `outpost ${OUTPOST_VERSION} — the operator CLI\n\nUsage:\n${Object.values(groups)
    .map((g) => g.usage)
    .join('')}`;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: false,
    options: { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean' } },
  });
  if (values.version === true) {
    console.log(OUTPOST_VERSION);
    return 0;
  }
  const [name, verb] = positionals;
  const group = name === undefined ? undefined : groups[name];
  if (values.help === true || group === undefined) {
    if (name !== undefined && group === undefined) console.error(`unknown command: ${name}\n`);
    console.log(usage());
    return values.help === true ? 0 : 2;
  }
  // Everything after the group (and verb) goes to the group's own option parser.
  const rest = argv.slice(argv.indexOf(name as string) + 1);
  if (group.raw === true) return group.run(undefined, rest);
  const args = verb === undefined ? rest : rest.filter((a, i) => !(a === verb && i === rest.indexOf(verb)));
  return group.run(verb, args);
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
