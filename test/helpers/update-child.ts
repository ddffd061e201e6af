// A real agent process for the SIGKILL and crash-loop tests: starts an agent from the JSON
// config overrides in OUTPOST_CHILD_CONFIG, prints `ready <version>` once it serves, runs one
// update check and prints `checked <outcome>`. OUTPOST_UPDATER_FAULT can kill it mid-install.

import { loadConfig } from '../../agent/config.ts';
import { createAgent } from '../../agent/main.ts';
import { createJsonLogger } from '../../shared/log.ts';

const config = loadConfig({ overrides: JSON.parse(process.env.OUTPOST_CHILD_CONFIG ?? '{}') });
const agent = createAgent(config, {
  logger: createJsonLogger({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' }),
});
await agent.start();
const current = agent.registry.current('mlp-classifier');
process.stdout.write(`ready ${current?.version ?? 'none'}\n`);
if (process.env.OUTPOST_CHILD_CHECK !== '0') {
  const outcome = await agent.updater!.checkNow();
  process.stdout.write(`checked ${JSON.stringify(outcome)}\n`);
  await agent.stop();
} else {
  // Serve until killed.
  setInterval(() => undefined, 1000);
}
