import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];

function cleanup(): void {
  if (process.env.OUTPOST_KEEP_TMP === '1') return;
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
}

/** A fresh temporary directory, removed when the test process exits (OUTPOST_KEEP_TMP=1 keeps it). */
export function tempDir(prefix = 'outpost'): string {
  if (made.length === 0) process.once('exit', cleanup);
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  made.push(dir);
  return dir;
}
