/**
 * Which versions of a model stay loaded, as in TF Serving's model version policy: the newest N
 * (by release counter), or exactly the listed versions (pinned). Versions outside a pinned
 * list are refused at load time rather than loaded and then dropped.
 */
export type VersionPolicy = { latest: number } | { specific: readonly string[] };

export function admits(policy: VersionPolicy, version: string): boolean {
  return 'latest' in policy || policy.specific.includes(version);
}

/**
 * From the ready versions (any order), the ones the policy no longer keeps. The newest ready
 * version is never retired by `latest`, so a model always keeps serving.
 */
export function toRetire<T extends { version: string; releaseCounter: number }>(
  policy: VersionPolicy,
  ready: readonly T[],
): T[] {
  const newestFirst = [...ready].sort((a, b) => b.releaseCounter - a.releaseCounter);
  if ('latest' in policy) return newestFirst.slice(Math.max(1, policy.latest));
  return newestFirst.filter((v) => !policy.specific.includes(v.version));
}

export function describePolicy(policy: VersionPolicy): string {
  return 'latest' in policy ? `latest ${policy.latest}` : `specific [${policy.specific.join(', ')}]`;
}
