import type { OutboxMessage } from './types.ts';

/**
 * A caller waiting for messages [from, to) of the pending list: told which of them were stored
 * (the rest did not fit), or the error that stored none.
 */
export interface Waiter {
  from: number;
  to: number;
  settle: (stored: Uint8Array, error: Error | undefined) => void;
}

/**
 * Messages waiting for the outbox's next commit, in order, and who waits for them. One caller
 * may wait for many messages with one promise (a pipeline's batch of predictions).
 */
export class Waiting {
  private batch: OutboxMessage[] = [];
  private waiters: Waiter[] = [];

  get length(): number {
    return this.batch.length;
  }

  /** One message: resolves when stored, rejects with `full()` when it did not fit. */
  one(msg: OutboxMessage, full: () => Error): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const at = this.batch.length;
      this.batch.push(msg);
      this.waiters.push({
        from: at,
        to: at + 1,
        settle: (stored, error) => {
          if (error !== undefined) reject(error);
          else if (stored[at] === 1) resolve();
          else reject(full());
        },
      });
    });
  }

  /** Several messages: resolves with whether each was stored. */
  many(msgs: readonly OutboxMessage[]): Promise<boolean[]> {
    return new Promise<boolean[]>((resolve, reject) => {
      const from = this.batch.length;
      for (const m of msgs) this.batch.push(m);
      const to = this.batch.length;
      this.waiters.push({
        from,
        to,
        settle: (stored, error) => {
          if (error !== undefined) {
            reject(error);
            return;
          }
          const out = new Array<boolean>(to - from);
          for (let i = from; i < to; i++) out[i - from] = stored[i] === 1;
          resolve(out);
        },
      });
    });
  }

  /** Hands over what waits now (for one commit); later messages start a new batch. */
  take(): { batch: OutboxMessage[]; waiters: Waiter[] } {
    const taken = { batch: this.batch, waiters: this.waiters };
    this.batch = [];
    this.waiters = [];
    return taken;
  }

  /** Rejects everything waiting. */
  fail(error: Error): void {
    const { batch, waiters } = this.take();
    const none = new Uint8Array(batch.length);
    for (const w of waiters) w.settle(none, error);
  }
}
