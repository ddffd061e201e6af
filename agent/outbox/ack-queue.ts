import type { Lane } from './types.ts';

/** A PUBACKed message whose row is still to be deleted. */
export interface Ack {
  seq: number;
  bytes: number;
  lane: Lane;
  refused: boolean;
}

/** Acks waiting for their delete: at most this many, for at most this long. */
const ACK_BATCH = 512;
const ACK_DELAY_MS = 20;

/**
 * The outbox's acknowledged messages, waiting to be deleted in a batch. `flush` deletes them in
 * a transaction of their own; it is called only while `alone()` says no commit of new messages
 * is coming (that commit takes the deletes along and saves a transaction).
 */
export class AckQueue {
  private acks: Ack[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly flush: () => void,
    private readonly alone: () => boolean,
  ) {}

  push(ack: Ack): void {
    this.acks.push(ack);
    if (!this.alone()) return;
    if (this.acks.length >= ACK_BATCH) this.flush();
    else this.timer ??= setTimeout(() => this.due(), ACK_DELAY_MS);
  }

  private due(): void {
    this.timer = undefined;
    if (this.alone()) this.flush();
  }

  /** Everything waiting, for the caller to delete now. */
  take(): Ack[] {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const acks = this.acks;
    this.acks = [];
    return acks;
  }

  /** Acks whose delete was rolled back wait again. */
  requeue(acks: Ack[]): void {
    if (acks.length === 0) return;
    this.acks = acks.concat(this.acks);
    this.timer ??= setTimeout(() => this.due(), ACK_DELAY_MS);
  }
}
