import type { Logger } from './log.ts';
import type { Publisher } from './publisher.ts';
import type { IncomingCommand } from './uplink/uplink.ts';

type Outcome = { ok: true; result: unknown } | { ok: false; error: string };

export type CommandHandler = (args: Record<string, unknown>) => Promise<unknown> | unknown;

/**
 * Commands arriving on `cmd/{name}`. Each is answered once: on the MQTT 5 response topic with
 * its correlation data, or (3.1.1) on `evt/reply/{name}` with the request's `corr` echoed.
 * A command id seen before is answered from memory, not run twice (QoS 1 may redeliver).
 */
export class CommandDispatcher {
  private readonly handlers = new Map<string, CommandHandler>();
  /** Outcomes by command id; a pending entry makes a redelivery during execution wait, not run. */
  private readonly seen = new Map<string, Promise<Outcome>>();
  private readonly maxSeen = 1_000;
  readonly counters = { executed: 0, duplicates: 0 };

  constructor(
    private readonly publisher: Publisher,
    private readonly log: Logger,
  ) {}

  register(name: string, handler: CommandHandler): void {
    this.handlers.set(name, handler);
  }

  async handle(cmd: IncomingCommand): Promise<void> {
    let request: { id?: unknown; corr?: unknown; args?: unknown } = {};
    let parseError: string | undefined;
    if (cmd.payload.length > 0) {
      try {
        const parsed: unknown = JSON.parse(cmd.payload.toString('utf8'));
        if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed))
          request = parsed as typeof request;
        else parseError = 'command body must be a JSON object';
      } catch {
        parseError = 'command body is not valid JSON';
      }
    }
    const id = typeof request.id === 'string' ? request.id : undefined;
    const corr = typeof request.corr === 'string' ? request.corr : undefined;
    const envelopeBase = {
      command: cmd.name,
      ...(id === undefined ? {} : { id }),
      ...(corr === undefined ? {} : { corr }),
    };
    let body: Record<string, unknown>;
    if (parseError !== undefined) {
      body = { ...envelopeBase, ok: false, error: parseError };
    } else if (id !== undefined && this.seen.has(id)) {
      this.counters.duplicates++;
      const outcome = await (this.seen.get(id) as Promise<Outcome>);
      body = { ...envelopeBase, ...outcome, duplicate: true };
    } else {
      const run = this.execute(cmd.name, request.args);
      if (id !== undefined) this.remember(id, run);
      body = { ...envelopeBase, ...(await run) };
    }
    await this.publisher.reply(cmd.name, body, cmd.responseTopic, cmd.correlationData);
  }

  private async execute(name: string, rawArgs: unknown): Promise<Outcome> {
    const handler = this.handlers.get(name);
    if (handler === undefined) return { ok: false, error: `unknown command ${name}` };
    this.counters.executed++;
    try {
      const args =
        typeof rawArgs === 'object' && rawArgs !== null && !Array.isArray(rawArgs)
          ? (rawArgs as Record<string, unknown>)
          : {};
      return { ok: true, result: await handler(args) };
    } catch (err) {
      this.log.warn({ err, command: name }, 'command failed');
      return { ok: false, error: err instanceof Error ? err.message : String(err) };
    }
  }

  private remember(id: string, result: Promise<Outcome>): void {
    this.seen.set(id, result);
    if (this.seen.size > this.maxSeen) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }
}
