/** MQTT topic names, exactly as DESIGN.md fixes them. One place, so nothing else builds topic strings. */
export const TOPIC_ROOT = 'outpost/v1';

/** Device ids and model names become topic levels: they may not contain MQTT separators or wildcards. */
export const TOPIC_LEVEL = /^[A-Za-z0-9._-]{1,128}$/;

export function isTopicLevel(value: string): boolean {
  return TOPIC_LEVEL.test(value);
}

export const topics = {
  status: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/status`,
  pred: (deviceId: string, model: string) => `${TOPIC_ROOT}/${deviceId}/pred/${model}`,
  telemetry: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/telemetry`,
  evt: (deviceId: string, type: string) => `${TOPIC_ROOT}/${deviceId}/evt/${type}`,
  cmd: (deviceId: string, name: string) => `${TOPIC_ROOT}/${deviceId}/cmd/${name}`,
  cmdFilter: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/cmd/+`,
  reply: (deviceId: string, name: string) => `${TOPIC_ROOT}/${deviceId}/evt/reply/${name}`,
  allStatus: () => `${TOPIC_ROOT}/+/status`,
} as const;

/** Splits `outpost/v1/{deviceId}/{kind}/…` back into its parts; undefined when it is not an Outpost topic. */
export function parseTopic(topic: string): { deviceId: string; kind: string; rest: string[] } | undefined {
  const parts = topic.split('/');
  if (parts.length < 4 || parts[0] !== 'outpost' || parts[1] !== 'v1') return undefined;
  const [, , deviceId, kind, ...rest] = parts;
  if (deviceId === undefined || kind === undefined) return undefined;
  return { deviceId, kind, rest };
}

/**
 * Matches an MQTT topic against a filter with `+` and `#` wildcards. A `+` may carry a capture
 * name as `+name` (an Outpost extension used by pipelines, e.g. `sensors/+sensor/accel`); the
 * captured levels are returned by name. Returns undefined when the topic does not match.
 */
export function matchTopic(filter: string, topic: string): Record<string, string> | undefined {
  const f = filter.split('/');
  const t = topic.split('/');
  const captures: Record<string, string> = {};
  for (let i = 0; i < f.length; i++) {
    const level = f[i] as string;
    if (level === '#') return captures;
    const value = t[i];
    if (value === undefined) return undefined;
    if (level.startsWith('+')) {
      if (level.length > 1) captures[level.slice(1)] = value;
      continue;
    }
    if (level !== value) return undefined;
  }
  return f.length === t.length ? captures : undefined;
}

/** The filter to subscribe with: capture names stripped (`+sensor` → `+`). */
export function subscriptionFilter(filter: string): string {
  return filter
    .split('/')
    .map((level) => (level.startsWith('+') ? '+' : level))
    .join('/');
}
