import type { AgentConfigInput } from '../../agent/config.ts';
import type { Agent } from '../../agent/main.ts';
import { testAgent } from './agent.ts';

/** An agent serving the given bundle dirs over HTTP only (no MQTT), started. */
export async function apiAgent(bundles: string[], overrides: AgentConfigInput = {}): Promise<Agent> {
  const agent = testAgent({
    uplink: { enabled: false },
    sensors: { mqtt: 'off' },
    models: { bundles },
    ...overrides,
  });
  await agent.start();
  return agent;
}

export function baseUrl(agent: Agent): string {
  return `http://127.0.0.1:${agent.httpPort}`;
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> & { error?: string }; headers: Headers }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : JSON.parse(text), headers: res.headers };
}

export async function getJson(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> & { error?: string } }> {
  const res = await fetch(url, { headers });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : JSON.parse(text) };
}

/** A V2 binary-extension body: JSON header then the raw blobs, and its header length. */
export function binaryBody(header: unknown, blobs: Buffer[]): { body: Buffer; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header));
  return { body: Buffer.concat([json, ...blobs]), headerLength: json.length };
}

/** Splits a V2 binary answer into its JSON header and the raw blob of each binary output. */
export function splitBinaryAnswer(
  raw: Buffer,
  headerLength: number,
): {
  header: {
    outputs: Array<{
      name: string;
      datatype: string;
      shape: number[];
      data?: unknown[];
      parameters?: { binary_data_size?: number };
    }>;
  } & Record<string, unknown>;
  blobs: Map<string, Buffer>;
} {
  const header = JSON.parse(raw.subarray(0, headerLength).toString('utf8'));
  const blobs = new Map<string, Buffer>();
  let offset = headerLength;
  for (const o of header.outputs) {
    const size = o.parameters?.binary_data_size;
    if (size === undefined) continue;
    blobs.set(o.name, raw.subarray(offset, offset + size));
    offset += size;
  }
  if (offset !== raw.length) throw new Error(`binary answer has ${raw.length - offset} unclaimed bytes`);
  return { header, blobs };
}
