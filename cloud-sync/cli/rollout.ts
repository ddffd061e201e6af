import { parseArgs } from 'node:util';
import type { RolloutStatus } from '../rollout/engine.ts';
import type { RolloutRecord } from '../store/repository.ts';
import { CLIENT_OPTIONS, clientFrom, table } from './common.ts';

export const ROLLOUT_USAGE = `  outpost rollout create --bundle NAME@VERSION --selector TAG=VALUE --waves 1,10,50,100
        --max-failure-rate 5% --min-reporting N --soak 10m [--device-timeout 30m] [--on-failure abort|pause]
  outpost rollout list | status ID [--watch] | pause ID | resume ID | abort ID [--reason TEXT]`;

export function formatStatus(s: RolloutStatus): string {
  const r = s.rollout;
  const lines = [
    `rollout ${r.id}  ${r.bundle}@${r.version}  ${r.state.toUpperCase()}${r.state === 'running' ? ` (wave ${r.wave + 1}/${r.waves.length}${r.soakStartedAt === null ? '' : ', soaking'})` : ''}`,
    `  gates: failure rate ≤ ${(r.maxFailureRate * 100).toFixed(1)}%, ≥ ${r.minReporting} reporting, soak ${Math.round(r.soakMs / 1000)} s, silent device fails after ${Math.round(r.deviceTimeoutMs / 1000)} s; on failure: ${r.onFailure}`,
  ];
  const rows = [['WAVE', 'UPTO', 'DEVICES', 'OK', 'FAILED', 'TIMEOUT', 'PENDING']];
  for (const w of s.waves)
    rows.push([
      String(w.index + 1),
      `${w.percent}%`,
      String(w.devices),
      String(w.counts.success),
      String(w.counts.failure),
      String(w.counts.timeout),
      String(w.counts.pending),
    ]);
  lines.push(table(rows).replace(/^/gm, '  '));
  lines.push('  events:');
  for (const e of s.events.slice(-12))
    lines.push(
      `    ${new Date(e.ts).toISOString()}  ${e.type.padEnd(20)} ${e.deviceId === null ? '' : `${e.deviceId}: `}${e.reason}`,
    );
  return lines.join('\n');
}

export async function runRollout(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...CLIENT_OPTIONS,
      bundle: { type: 'string' },
      selector: { type: 'string' },
      waves: { type: 'string' },
      'max-failure-rate': { type: 'string' },
      'min-reporting': { type: 'string' },
      soak: { type: 'string' },
      'device-timeout': { type: 'string' },
      'on-failure': { type: 'string' },
      reason: { type: 'string' },
      watch: { type: 'boolean' },
    },
  });
  const [verb, id] = positionals;
  const client = clientFrom(values);
  const show = (s: RolloutStatus) =>
    console.log(values.json === true ? JSON.stringify(s, null, 2) : formatStatus(s));
  if (verb === 'create') {
    if (values.bundle === undefined) {
      console.error(`usage:\n${ROLLOUT_USAGE}`);
      return 2;
    }
    const body: Record<string, unknown> = { bundle: values.bundle };
    if (values.selector !== undefined) body.selector = values.selector;
    if (values.waves !== undefined) body.waves = values.waves;
    if (values['max-failure-rate'] !== undefined) body.maxFailureRate = values['max-failure-rate'];
    if (values['min-reporting'] !== undefined) body.minReporting = Number(values['min-reporting']);
    if (values.soak !== undefined) body.soak = values.soak;
    if (values['device-timeout'] !== undefined) body.deviceTimeout = values['device-timeout'];
    if (values['on-failure'] !== undefined) body.onFailure = values['on-failure'];
    show(await client.post<RolloutStatus>('/v1/admin/rollouts', body));
    return 0;
  }
  if (verb === 'list') {
    const list = await client.get<RolloutRecord[]>('/v1/admin/rollouts');
    if (values.json === true) console.log(JSON.stringify(list, null, 2));
    else
      console.log(
        table([
          ['ID', 'BUNDLE', 'STATE', 'WAVE', 'REASON'],
          ...list.map((r) => [
            r.id,
            `${r.bundle}@${r.version}`,
            r.state,
            `${r.wave + 1}/${r.waves.length}`,
            r.reason ?? '',
          ]),
        ]),
      );
    return 0;
  }
  if (id !== undefined && verb === 'status') {
    for (;;) {
      const s = await client.get<RolloutStatus>(`/v1/admin/rollouts/${id}`);
      if (values.watch === true && process.stdout.isTTY) process.stdout.write('\x1b[2J\x1b[H');
      show(s);
      if (values.watch !== true || s.rollout.state === 'completed' || s.rollout.state === 'aborted') return 0;
      await new Promise((r) => setTimeout(r, 2_000));
    }
  }
  if (id !== undefined && (verb === 'pause' || verb === 'resume' || verb === 'abort')) {
    show(
      await client.post<RolloutStatus>(
        `/v1/admin/rollouts/${id}/${verb}`,
        values.reason === undefined ? {} : { reason: values.reason },
      ),
    );
    return 0;
  }
  console.error(`usage:\n${ROLLOUT_USAGE}`);
  return 2;
}
