import type { Logger } from '../log.ts';
import type { StateStore, UpdateState } from './state.ts';

export interface CrashLoopOptions {
  /** Unclean starts within `windowMs` of an activation that make the agent revert it. */
  maxUncleanStarts: number;
  windowMs: number;
  /** Running this long after an activation confirms it (the guard stops watching). */
  stableAfterMs: number;
}

export interface Reverted {
  name: string;
  from: string;
  to: string;
  uncleanStarts: number;
}

/**
 * Automatic revert when the agent crash-loops after an update. A boot record in the data dir
 * says whether the last run stopped cleanly; an unclean start soon after an activation counts
 * against it, and too many put the previous version back as current (and refuse the new
 * model's digest from then on) before any model is loaded.
 */
export class CrashLoopGuard {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: StateStore,
    private readonly o: CrashLoopOptions,
    private readonly now: () => number,
    private readonly log: Logger,
  ) {}

  async onBoot(): Promise<{ state: UpdateState; reverted: Reverted[] }> {
    const state = await this.store.load();
    const { unclean } = await this.store.markBoot(this.now());
    const a = state.activation;
    const reverted: Reverted[] = [];
    if (a === undefined) return { state, reverted };
    if (this.now() - a.at > this.o.windowMs) {
      delete state.activation;
      await this.store.save(state);
      return { state, reverted };
    }
    if (!unclean) return { state, reverted };
    a.uncleanStarts++;
    this.log.warn(
      { model: `${a.name}@${a.version}`, uncleanStarts: a.uncleanStarts },
      'unclean start after an update',
    );
    const m = state.models[a.name];
    if (
      a.uncleanStarts >= this.o.maxUncleanStarts &&
      m?.previous !== undefined &&
      m.current.version === a.version
    ) {
      state.rejected[m.current.sha256] = {
        reason: `crash loop: ${a.uncleanStarts} unclean starts within ${this.o.windowMs} ms of activation`,
        at: this.now(),
        name: a.name,
        version: a.version,
      };
      reverted.push({
        name: a.name,
        from: m.current.version,
        to: m.previous.version,
        uncleanStarts: a.uncleanStarts,
      });
      state.models[a.name] = { current: m.previous };
      delete state.activation;
    }
    await this.store.save(state);
    return { state, reverted };
  }

  /** After `stableAfterMs` of running, the state's current activation is confirmed (and saved). */
  watch(state: UpdateState, onConfirmed: () => void): void {
    const a = state.activation;
    if (a === undefined) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    const wait = Math.max(0, a.at + this.o.stableAfterMs - this.now());
    this.timer = setTimeout(() => {
      if (state.activation?.at !== a.at) return;
      delete state.activation;
      this.store
        .save(state)
        .then(onConfirmed, (err: unknown) => this.log.warn({ err }, 'confirming update failed'));
    }, wait);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
  }
}
