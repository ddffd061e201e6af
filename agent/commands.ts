import type { Logger } from './log.ts';
import type { Publisher } from './publisher.ts';
import type { IncomingCommand } from './uplink/uplink.ts';

export type CommandHandler = (args: Record<string, unknown>) => Promise<unknown> | unknown;

/**
 * Commands arriving on `cmd/{name}`. Each is answered once: on the MQTT 5 response topic with
 * its correlation data, or (3.1.1) on `evt/reply/{name}` with the request's `corr` echoed.
 * A command id seen before is answered from memory, not run twice (QoS 1 may redeliver).
 */
export class CommandDispatcher {
  private readonly handlers = new Map<string, CommandHandler>();
  private readonly seen = new Map<string, unknown>();
  private readonly maxSeen = 1_000;

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
      body = { ...envelopeBase, ok: true, duplicate: true, result: this.seen.get(id) };
    } else {
      const handler = this.handlers.get(cmd.name);
      if (handler === undefined) {
        body = { ...envelopeBase, ok: false, error: `unknown command ${cmd.name}` };
      } else {
        try {
          const args =
            typeof request.args === 'object' && request.args !== null
              ? (request.args as Record<string, unknown>)
              : {};
          const result = await handler(args);
          body = { ...envelopeBase, ok: true, result };
          if (id !== undefined) this.remember(id, result);
        } catch (err) {
          this.log.warn({ err, command: cmd.name }, 'command failed');
          body = { ...envelopeBase, ok: false, error: err instanceof Error ? err.message : String(err) };
        }
      }
    }
    await this.publisher.reply(cmd.name, body, cmd.responseTopic, cmd.correlationData);
  }

  private remember(id: string, result: unknown): void {
    this.seen.set(id, result);
    if (this.seen.size > this.maxSeen) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }
}
