import type { Logger } from '../log.ts';
import type { Publisher } from '../publisher.ts';
import type { ModelRegistry } from '../runtime/registry.ts';
import type { MqttSensorBus } from '../sources/mqtt-bus.ts';
import { type InferenceObserver, PipelineRunner } from './pipeline.ts';

interface Attached {
  specJson: string;
  runner: PipelineRunner;
  detach: () => void;
}

export interface PipelineManagerOptions {
  registry: ModelRegistry;
  publisher: Publisher;
  bus: MqttSensorBus | undefined;
  log: Logger;
  bufferLimit: number;
  logIntervalMs?: number;
  observe?: InferenceObserver;
}

/**
 * Keeps one pipeline per model, following the serving version's manifest: when a new version
 * brings a different pipeline, the old one is detached and the new one attached.
 */
export class PipelineManager {
  private readonly attached = new Map<string, Attached>();
  private readonly onChange = (name: string) => this.sync(name);

  constructor(private readonly o: PipelineManagerOptions) {}

  start(): void {
    this.o.registry.on('changed', this.onChange);
    for (const name of this.o.registry.names()) this.sync(name);
  }

  private sync(name: string): void {
    const current = this.o.registry.current(name);
    const spec = current?.bundle.manifest.pipeline;
    const specJson = spec === undefined ? '' : JSON.stringify(spec);
    const existing = this.attached.get(name);
    if (existing !== undefined && existing.specJson === specJson) return;
    if (existing !== undefined) {
      existing.detach();
      void existing.runner.stop();
      this.attached.delete(name);
    }
    if (spec === undefined || current === undefined) return;
    const runner = new PipelineRunner({
      model: name,
      spec,
      labels: current.bundle.manifest.labels,
      registry: this.o.registry,
      publisher: this.o.publisher,
      log: this.o.log.child({ pipeline: name }),
      bufferLimit: this.o.bufferLimit,
      ...(this.o.logIntervalMs === undefined ? {} : { logIntervalMs: this.o.logIntervalMs }),
      ...(this.o.observe === undefined ? {} : { observe: this.o.observe }),
    });
    let detach = () => {};
    const source = spec.source;
    if (source.kind === 'mqtt') {
      if (this.o.bus === undefined) {
        this.o.log.warn({ model: name }, 'pipeline reads MQTT but the sensor bus is off');
      } else {
        detach = this.o.bus.add({
          filter: source.topic,
          keyCapture: source.key,
          deliver: (key, payload) => runner.feed(key, payload),
        });
      }
    }
    this.attached.set(name, { specJson, runner, detach });
    this.o.log.info({ model: name, source: source.kind }, 'pipeline attached');
  }

  /** The pipeline fed by `POST /v1/sensors/{name}`. */
  httpSource(name: string): PipelineRunner | undefined {
    for (const a of this.attached.values()) {
      const s = a.runner.spec.source;
      if (s.kind === 'http' && s.name === name) return a.runner;
    }
    return undefined;
  }

  /** Pipelines reading a named line stream. */
  lineStreamRunners(stream: string): PipelineRunner[] {
    const out: PipelineRunner[] = [];
    for (const a of this.attached.values()) {
      const s = a.runner.spec.source;
      if (s.kind === 'lines' && s.stream === stream) out.push(a.runner);
    }
    return out;
  }

  stats(): Record<string, PipelineRunner['counters']> {
    return Object.fromEntries([...this.attached].map(([name, a]) => [name, { ...a.runner.counters }]));
  }

  /** Detaches every source, then waits for windows already in inference. */
  async stop(): Promise<void> {
    this.o.registry.off('changed', this.onChange);
    const runners = [...this.attached.values()];
    for (const a of runners) a.detach();
    await Promise.all(runners.map((a) => a.runner.stop()));
    this.attached.clear();
  }
}
