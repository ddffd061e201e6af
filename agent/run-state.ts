import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

/**
 * Clean versus unclean exits, kept on disk for whoever judges crash loops (the updater).
 * `run-state.json` exists while the agent runs: written at start, removed only by a graceful
 * stop. Finding it at start means the previous run died (crash, SIGKILL, power loss, missed
 * shutdown deadline). `run-history.json` keeps the last runs, newest last.
 */
export const RUN_STATE_FILE = 'run-state.json';
export const RUN_HISTORY_FILE = 'run-history.json';
const HISTORY_LIMIT = 20;

export interface RunRecord {
  bootId: string;
  pid: number;
  agentVersion: string;
  startedAt: string;
  /** Set when the run ended gracefully. */
  stoppedAt?: string;
  clean: boolean;
}

export interface RunStart {
  /** The run before this one, if any was recorded. */
  previous: RunRecord | undefined;
  /** How many runs in a row, newest first, ended uncleanly (0 after a clean stop). */
  uncleanStreak: number;
}

export class RunState {
  private current: RunRecord | undefined;

  constructor(
    private readonly dataDir: string,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Records this run's start; a leftover run-state file becomes an unclean entry in the history. */
  begin(info: { bootId: string; agentVersion: string; pid?: number }): RunStart {
    mkdirSync(this.dataDir, { recursive: true });
    const history = readRunHistory(this.dataDir);
    const leftover = readJson<RunRecord>(join(this.dataDir, RUN_STATE_FILE));
    if (leftover !== undefined) history.push({ ...leftover, clean: false });
    this.current = {
      bootId: info.bootId,
      pid: info.pid ?? process.pid,
      agentVersion: info.agentVersion,
      startedAt: this.now().toISOString(),
      clean: false,
    };
    writeAtomic(join(this.dataDir, RUN_HISTORY_FILE), history.slice(-HISTORY_LIMIT));
    writeAtomic(join(this.dataDir, RUN_STATE_FILE), this.current);
    return { previous: history.at(-1), uncleanStreak: uncleanStreak(history) };
  }

  /** Called only at the end of a graceful stop. */
  end(): void {
    if (this.current === undefined) return;
    const history = readRunHistory(this.dataDir);
    history.push({ ...this.current, stoppedAt: this.now().toISOString(), clean: true });
    writeAtomic(join(this.dataDir, RUN_HISTORY_FILE), history.slice(-HISTORY_LIMIT));
    rmSync(join(this.dataDir, RUN_STATE_FILE), { force: true });
    this.current = undefined;
  }
}

export function readRunHistory(dataDir: string): RunRecord[] {
  const history = readJson<RunRecord[]>(join(dataDir, RUN_HISTORY_FILE));
  return Array.isArray(history) ? history : [];
}

export function uncleanStreak(history: readonly RunRecord[]): number {
  let n = 0;
  for (let i = history.length - 1; i >= 0 && history[i]?.clean === false; i--) n++;
  return n;
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    // Missing or torn by a power cut: either way there is nothing trustworthy to read.
    return undefined;
  }
}

function writeAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o640);
  try {
    writeSync(fd, `${JSON.stringify(value, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
