import { OutpostError } from '../../shared/errors.ts';
import { AdminClient } from '../client/admin-client.ts';

/** Options every admin subcommand takes. */
export const CLIENT_OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** `--url` / `OUTPOST_URL` (default the local control plane) and `--token` / `OUTPOST_OPERATOR_TOKEN`. */
export function clientFrom(values: { url?: string | undefined; token?: string | undefined }): AdminClient {
  const url = (values.url ?? process.env.OUTPOST_URL ?? 'http://127.0.0.1:8480').replace(/\/$/, '');
  const token = values.token ?? process.env.OUTPOST_OPERATOR_TOKEN;
  if (token === undefined || token === '')
    throw new OutpostError('UNAUTHORIZED', 'the operator token is needed: --token or OUTPOST_OPERATOR_TOKEN');
  return new AdminClient(url, token);
}

export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows)
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length);
    });
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function ago(ms: number | null, now = Date.now()): string {
  if (ms === null) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 90 ? `${s}s ago` : s < 5400 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

/** A one-line progress bar on a TTY (stderr), silent otherwise. */
export function progressBar(label: string): (sent: number, total: number) => void {
  if (!process.stderr.isTTY) return () => {};
  let last = -1;
  return (sent, total) => {
    const pct = total === 0 ? 100 : Math.floor((sent / total) * 100);
    if (pct === last) return;
    last = pct;
    const width = 30;
    const filled = Math.round((pct / 100) * width);
    process.stderr.write(
      `\r  ${label} [${'█'.repeat(filled)}${'·'.repeat(width - filled)}] ${String(pct).padStart(3)}% ${(sent / 1e6).toFixed(1)}/${(total / 1e6).toFixed(1)} MB`,
    );
    if (sent >= total) process.stderr.write('\n');
  };
}
