import { type AgentConfigInput, loadConfig } from '../../agent/config.ts';
import { type Agent, createAgent } from '../../agent/main.ts';
import { createJsonLogger } from '../../shared/log.ts';
import { tempDir } from './tmp.ts';

/** An agent on a temp data dir, HTTP on an ephemeral loopback port, quiet logs unless OUTPOST_TEST_LOG is set. */
export function testAgent(overrides: AgentConfigInput = {}): Agent {
  const config = loadConfig({
    overrides: {
      deviceId: 'test-device',
      dataDir: tempDir('agent'),
      http: { port: 0 },
      runtime: { workers: 1 },
      ...overrides,
    },
  });
  const logger = createJsonLogger({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' });
  return createAgent(config, { logger });
}

/** Waits until `check` holds, polling; fails with `what` after the timeout. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
