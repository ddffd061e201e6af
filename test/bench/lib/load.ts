import { Agent, request } from 'node:http';
import { Histogram } from './histogram.ts';

export interface LoadTarget {
  port: number;
  path: string;
  method?: 'GET' | 'POST';
  body?: Buffer;
  headers?: Record<string, string>;
}

export interface LoadResult {
  completed: number;
  errors: number;
  /** Status codes other than 200, with counts (so a run of 429s is visible, not just "errors"). */
  statuses: Record<string, number>;
  elapsedMs: number;
  /** Completed requests per second. */
  throughput: number;
  /** Latency of completed requests, in µs. */
  latency: Histogram;
}

function once(agent: Agent, target: LoadTarget): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...target.headers };
    if (target.body !== undefined) {
      headers['content-type'] ??= 'application/json';
      headers['content-length'] = target.body.length;
    }
    const req = request(
      {
        host: '127.0.0.1',
        port: target.port,
        path: target.path,
        method: target.method ?? 'GET',
        agent,
        headers,
      },
      (res) => {
        // Read the whole answer: a response is done when its body is, not at its headers.
        res.on('data', () => {});
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(target.body);
  });
}

/**
 * A closed-loop load generator: `concurrency` clients, each sending its next request as soon
 * as the previous one is answered, over keep-alive connections (one per client), for
 * `durationMs`. Closed loop is how perf_analyzer drives a server: throughput is what the
 * server sustains at that concurrency, and latency is not inflated by a queue we made.
 */
export async function closedLoop(
  target: LoadTarget,
  concurrency: number,
  durationMs: number,
): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
  const latency = new Histogram();
  const statuses: Record<string, number> = {};
  let completed = 0;
  let errors = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  const client = async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        const status = await once(agent, target);
        if (status === 200) {
          latency.record((performance.now() - t0) * 1000);
          completed++;
        } else {
          errors++;
          statuses[status] = (statuses[status] ?? 0) + 1;
        }
      } catch (err) {
        errors++;
        const key = err instanceof Error && 'code' in err ? String(err.code) : 'error';
        statuses[key] = (statuses[key] ?? 0) + 1;
        // A refused connection would otherwise spin this loop as fast as the CPU allows.
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  const elapsedMs = performance.now() - started;
  agent.destroy();
  return { completed, errors, statuses, elapsedMs, throughput: (completed / elapsedMs) * 1000, latency };
}

/** Merges the windows judged stable into one figure set: throughput averaged, latencies pooled. */
export function combine(results: readonly LoadResult[]): LoadResult {
  const latency = Histogram.merged(results.map((r) => r.latency));
  const statuses: Record<string, number> = {};
  for (const r of results)
    for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  const completed = results.reduce((a, r) => a + r.completed, 0);
  const elapsedMs = results.reduce((a, r) => a + r.elapsedMs, 0);
  return {
    completed,
    errors: results.reduce((a, r) => a + r.errors, 0),
    statuses,
    elapsedMs,
    throughput: (completed / elapsedMs) * 1000,
    latency,
  };
}

/** Sends `count` requests one after another over one keep-alive connection; throws on any non-200. */
export async function sendSequentially(target: LoadTarget, count: number): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < count; i++) {
      const status = await once(agent, target);
      if (status !== 200) throw new Error(`${target.path} answered ${status}`);
    }
  } finally {
    agent.destroy();
  }
}
