import type { IncomingMessage, ServerResponse } from 'node:http';

export type Params = Record<string, string>;

export interface Context {
  req: IncomingMessage;
  res: ServerResponse;
  params: Params;
  url: URL;
  /** Reads the whole body, capped at the configured limit (413 beyond it). */
  body(): Promise<Buffer>;
}

export type Handler = (ctx: Context) => Promise<void> | void;

interface Route {
  method: string;
  path: string;
  parts: string[];
  handler: Handler;
}

/**
 * A small router for the local API: path segments, `{name}` parameters, and `{name}:verb`
 * segments for TF Serving's `/v1/models/m:predict` style. Matching is by segment, no regexes
 * built from user input.
 */
export class Router {
  /** Routes by segment count (in registration order): a path is only tried against routes of its length. */
  private readonly bySize = new Map<number, Route[]>();

  on(method: string, path: string, handler: Handler): this {
    const route = { method, path, parts: path.split('/').filter((p) => p !== ''), handler };
    const same = this.bySize.get(route.parts.length);
    if (same === undefined) this.bySize.set(route.parts.length, [route]);
    else same.push(route);
    return this;
  }

  get(path: string, handler: Handler): this {
    return this.on('GET', path, handler);
  }

  post(path: string, handler: Handler): this {
    return this.on('POST', path, handler);
  }

  /** Finds the handler; `allowed` lists methods that would match the path when none does. */
  match(
    method: string,
    pathname: string,
  ): { handler: Handler; params: Params; route: string } | { allowed: string[] } {
    const segments = segmentsOf(pathname);
    const allowed: string[] = [];
    for (const route of this.bySize.get(segments.length) ?? []) {
      const params = matchParts(route.parts, segments);
      if (params === undefined) continue;
      if (route.method === method || (method === 'HEAD' && route.method === 'GET'))
        return { handler: route.handler, params, route: route.path };
      allowed.push(route.method);
    }
    return { allowed };
  }
}

/** The non-empty segments of a path (what `split('/').filter(…)` gives, without the runtime split). */
function segmentsOf(pathname: string): string[] {
  const out: string[] = [];
  let from = 0;
  while (from <= pathname.length) {
    let to = pathname.indexOf('/', from);
    if (to === -1) to = pathname.length;
    if (to > from) out.push(pathname.slice(from, to));
    from = to + 1;
  }
  return out;
}

function matchParts(parts: string[], segments: string[]): Params | undefined {
  if (parts.length !== segments.length) return undefined;
  const params: Params = {};
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string;
    let seg = segments[i] as string;
    // Only an escaped segment needs decoding; most paths have none.
    if (seg.includes('%')) {
      try {
        seg = decodeURIComponent(seg);
      } catch {
        return undefined;
      }
    }
    const open = part.indexOf('{');
    if (open === -1) {
      if (part !== seg) return undefined;
      continue;
    }
    // `{name}` or `{name}:verb`
    const close = part.indexOf('}');
    const name = part.slice(open + 1, close);
    const suffix = part.slice(close + 1);
    const prefix = part.slice(0, open);
    if (!seg.startsWith(prefix) || !seg.endsWith(suffix)) return undefined;
    const value = seg.slice(prefix.length, seg.length - suffix.length);
    if (value === '') return undefined;
    params[name] = value;
  }
  return params;
}
