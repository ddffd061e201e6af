import { OutpostError } from '../shared/errors.ts';
import type { AgentConfig } from './config.ts';
import type { AgentStatus } from './main.ts';

/** `outpost-agent status`: asks the running agent's local API and summarises the answer. */
export async function fetchStatus(config: Readonly<AgentConfig>, timeoutMs = 5_000): Promise<AgentStatus> {
  const headers: Record<string, string> = {};
  if (config.http.token !== undefined) headers.authorization = `Bearer ${config.http.token}`;
  const host = config.http.host === '0.0.0.0' || config.http.host === '::' ? '127.0.0.1' : config.http.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${config.http.port}/v1/agent/status`;
  let res: Response;
  try {
    res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new OutpostError('INTERNAL', `the agent is not answering at ${url}; is outpost-agent running?`, {
      cause: err,
    });
  }
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (!res.ok)
    throw new OutpostError('INTERNAL', `${url} answered HTTP ${res.status}: ${String(body.error ?? '')}`);
  return body as unknown as AgentStatus;
}

export function formatStatus(s: AgentStatus): string {
  const lines = [
    `device    ${s.deviceId}  (agent ${s.agentVersion}, ${s.arch}, ${s.state}, boot ${s.bootId})`,
    `models    ${s.models.length === 0 ? 'none loaded' : ''}`,
  ];
  for (const m of s.models) lines.push(`  ${m.name}@${m.version}  ${m.state}  release ${m.releaseCounter}`);
  const o = s.outbox;
  lines.push(`outbox    ${o.rows} messages waiting (${o.bytes} bytes), ${o.pending} not yet committed`);
  const u = s.uplink;
  lines.push(
    u === undefined
      ? 'uplink    disabled'
      : `uplink    ${u.state}, MQTT ${u.protocol}, ${u.inflight} in flight, ${u.acked}/${u.published} acked${u.connectedAt === undefined ? '' : `, connected since ${u.connectedAt}`}${u.lastError === undefined ? '' : `, last error: ${u.lastError}`}`,
  );
  const sync = s.sync;
  lines.push(
    `last sync ${sync?.lastSyncAt === undefined ? 'never' : `${sync.lastSyncAt} (${sync.lastResult ?? 'unknown'})`}`,
  );
  return lines.join('\n');
}
