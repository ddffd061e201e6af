import { readdirSync } from 'node:fs';
import {
  constants,
  type IntervalHistogram,
  monitorEventLoopDelay,
  PerformanceObserver,
} from 'node:perf_hooks';
import { Gauge, Histogram, type Registry } from './prometheus.ts';

const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/**
 * The process and Node.js figures every Prometheus exporter for Node has, under the usual
 * names (`process_*`, `nodejs_*`): CPU, resident memory, heap, open files, event-loop lag
 * (now, and its distribution since the last scrape), and GC pauses by kind when asked for.
 */
export class ProcessMetrics {
  private readonly delay: IntervalHistogram;
  private readonly gcObserver: PerformanceObserver | undefined;

  /**
   * `gcPauses` adds `nodejs_gc_duration_seconds`. Off by default: Node then reports every
   * collection to JavaScript, and with a small young generation under request load that is
   * hundreds a second. Measured on 2 cores, 32 clients of the MLP over V2 JSON: 17% less
   * throughput with it on.
   */
  constructor(registry: Registry, options: { gcPauses?: boolean; resolutionMs?: number } = {}) {
    const resolutionMs = options.resolutionMs ?? 10;
    const registers = [registry];
    const delay = monitorEventLoopDelay({ resolution: resolutionMs });
    this.delay = delay;
    const cpu = (name: string, help: string, read: (u: NodeJS.CpuUsage) => number) =>
      new Gauge({
        name,
        help,
        registers,
        counter: true,
        collect() {
          this.set(read(process.cpuUsage()) / 1e6);
        },
      });
    cpu('process_cpu_user_seconds_total', 'User CPU time spent, seconds', (u) => u.user);
    cpu('process_cpu_system_seconds_total', 'System CPU time spent, seconds', (u) => u.system);
    cpu('process_cpu_seconds_total', 'User and system CPU time spent, seconds', (u) => u.user + u.system);
    const startTime = Math.round(Date.now() / 1000 - process.uptime());
    new Gauge({
      name: 'process_start_time_seconds',
      help: 'Start time of the process since the Unix epoch, seconds',
      registers,
      collect() {
        this.set(startTime);
      },
    });
    new Gauge({
      name: 'process_resident_memory_bytes',
      help: 'Resident memory size, bytes',
      registers,
      collect() {
        this.set(process.memoryUsage.rss());
      },
    });
    if (process.platform === 'linux')
      new Gauge({
        name: 'process_open_fds',
        help: 'Number of open file descriptors',
        registers,
        collect() {
          this.set(readdirSync('/proc/self/fd').length);
        },
      });
    const heap = (name: string, help: string, read: (m: NodeJS.MemoryUsage) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read(process.memoryUsage()));
        },
      });
    heap('nodejs_heap_size_total_bytes', 'V8 heap size, bytes', (m) => m.heapTotal);
    heap('nodejs_heap_size_used_bytes', 'V8 heap used, bytes', (m) => m.heapUsed);
    heap(
      'nodejs_external_memory_bytes',
      'Memory of C++ objects bound to JavaScript, bytes',
      (m) => m.external,
    );
    new Gauge({
      name: 'nodejs_eventloop_lag_seconds',
      help: 'Event-loop lag at scrape time (a setImmediate round trip), seconds',
      registers,
      collect() {
        const t0 = process.hrtime.bigint();
        return new Promise<void>((resolve) =>
          setImmediate(() => {
            this.set(Number(process.hrtime.bigint() - t0) / 1e9);
            resolve();
          }),
        );
      },
    });
    const lag = (suffix: string, help: string, read: (h: IntervalHistogram) => number) =>
      new Gauge({
        name: `nodejs_eventloop_lag_${suffix}_seconds`,
        help: `${help} event-loop delay since the last scrape, seconds`,
        registers,
        collect() {
          const v = read(delay);
          this.set(Number.isFinite(v) ? v / 1e9 : 0);
        },
      });
    lag('min', 'Minimum', (h) => h.min);
    lag('max', 'Maximum', (h) => h.max);
    lag('mean', 'Mean', (h) => h.mean);
    lag('stddev', 'Standard deviation of the', (h) => h.stddev);
    lag('p50', '50th percentile of the', (h) => h.percentile(50));
    lag('p90', '90th percentile of the', (h) => h.percentile(90));
    // The last of the lag gauges: once it has read the histogram, the next scrape's starts afresh.
    lag('p99', '99th percentile of the', (h) => {
      const p99 = h.percentile(99);
      h.reset();
      return p99;
    });
    const [major, minor, patch] = process.versions.node.split('.');
    new Gauge({
      name: 'nodejs_version_info',
      help: 'Node.js version',
      labelNames: ['version', 'major', 'minor', 'patch'],
      registers,
    }).set({ version: process.version, major: major ?? '', minor: minor ?? '', patch: patch ?? '' }, 1);
    if (options.gcPauses !== true) {
      this.gcObserver = undefined;
      return;
    }
    const gc = new Histogram({
      name: 'nodejs_gc_duration_seconds',
      help: 'Garbage collection pauses by kind, seconds',
      labelNames: ['kind'],
      buckets: [0.001, 0.01, 0.1, 1, 2, 5],
      registers,
    });
    const byKind = new Map<number, ReturnType<typeof gc.labels>>();
    this.gcObserver = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const kind = (entry as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0;
        let child = byKind.get(kind);
        if (child === undefined) {
          child = gc.labels({ kind: GC_KINDS[kind] ?? String(kind) });
          byKind.set(kind, child);
        }
        child.observe(entry.duration / 1000);
      }
    });
  }

  start(): void {
    this.delay.enable();
    this.gcObserver?.observe({ entryTypes: ['gc'] });
  }

  stop(): void {
    this.delay.disable();
    this.gcObserver?.disconnect();
  }
}
