import { spawnSync } from 'node:child_process';

const CLI = new URL('../../cloud-sync/cli.ts', import.meta.url).pathname;

/** Runs the `outpost` operator CLI in a child process. */
export function outpost(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, NODE_NO_WARNINGS: '1' },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
