import { parseArgs } from 'node:util';
import { OutpostError } from '../../shared/errors.ts';
import type { DeviceView } from '../fleet/devices.ts';
import { ago, CLIENT_OPTIONS, clientFrom, table } from './common.ts';

export const DEVICES_USAGE = `  outpost devices list | show ID | token [--tag K=V …] [--ttl 24h] | tag ID K=V … | delete ID
      the fleet: presence, inventory as devices report it; single-use enrolment tokens`;

function parseTags(list: readonly string[]): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const t of list) {
    const at = t.indexOf('=');
    if (at <= 0) throw new OutpostError('BAD_REQUEST', `tag "${t}" must be KEY=VALUE`);
    tags[t.slice(0, at)] = t.slice(at + 1);
  }
  return tags;
}

export async function runDevices(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...CLIENT_OPTIONS, tag: { type: 'string', multiple: true }, ttl: { type: 'string' } },
  });
  const [verb = 'list', id, ...rest] = positionals;
  const client = clientFrom(values);
  const print = (v: unknown) => console.log(JSON.stringify(v, null, 2));
  switch (verb) {
    case 'list': {
      const devices = await client.get<DeviceView[]>('/v1/admin/devices');
      if (values.json === true) {
        print(devices);
        return 0;
      }
      const rows = [['DEVICE', 'PRESENCE', 'SEEN', 'AGENT', 'ARCH', 'MODELS', 'TAGS']];
      for (const d of devices)
        rows.push([
          d.id,
          d.presence,
          ago(d.lastSeenAt),
          d.agentVersion ?? '-',
          d.arch ?? '-',
          d.installed.map((m) => `${m.name}@${m.version}`).join(',') || '-',
          Object.entries(d.tags)
            .map(([k, v]) => `${k}=${v}`)
            .join(',') || '-',
        ]);
      console.log(table(rows));
      return 0;
    }
    case 'show':
      if (id === undefined) break;
      print(await client.get(`/v1/admin/devices/${encodeURIComponent(id)}`));
      return 0;
    case 'token': {
      const body = {
        tags: parseTags(values.tag ?? []),
        ...(values.ttl === undefined ? {} : { ttl: values.ttl }),
      };
      const t = await client.post<{ token: string; expiresAt: number }>('/v1/admin/enrolment-tokens', body);
      if (values.json === true) {
        print(t);
        return 0;
      }
      console.log(t.token);
      console.error(`single-use; expires ${new Date(t.expiresAt).toISOString()}`);
      return 0;
    }
    case 'tag':
      if (id === undefined) break;
      print(
        await client.request('PATCH', `/v1/admin/devices/${encodeURIComponent(id)}`, {
          tags: parseTags(rest),
        }),
      );
      return 0;
    case 'delete':
      if (id === undefined) break;
      await client.request('DELETE', `/v1/admin/devices/${encodeURIComponent(id)}`);
      console.log(`deleted ${id}; its credential no longer works`);
      return 0;
  }
  console.error(`usage:\n${DEVICES_USAGE}`);
  return 2;
}
