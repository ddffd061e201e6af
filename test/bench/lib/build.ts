import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const BUILD_DIR = fileURLToPath(new URL('../.build/', import.meta.url));

/**
 * The processes under test run compiled JavaScript, as the installed service does: under tsx
 * every worker thread would load and run the TypeScript loader too, which costs memory and
 * start time a user never pays. Incremental, so a second run only re-emits what changed.
 */
export async function buildForBench(): Promise<string> {
  const tsc = fileURLToPath(new URL('../../../node_modules/typescript/bin/tsc', import.meta.url));
  const args = [tsc, '-p', fileURLToPath(new URL('../tsconfig.build.json', import.meta.url))];
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`building the bench failed (tsc exit ${code}):\n${output}`)),
    );
  });
  return BUILD_DIR;
}
