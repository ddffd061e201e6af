import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter, Gauge, Histogram, Registry } from '../agent/http/prometheus.ts';

test('counters, gauges and histograms render in the Prometheus text format 0.0.4', async () => {
  const registry = new Registry();
  const registers = [registry];
  const requests = new Counter({
    name: 'req_total',
    help: 'Requests',
    labelNames: ['model', 'code'],
    registers,
  });
  requests.inc({ model: 'a', code: 200 });
  requests.labels({ model: 'a', code: 200 }).inc(2);
  requests.inc({ model: 'quote"back\\slash\nline', code: 500 });
  new Counter({ name: 'idle_total', help: 'Never incremented', registers });
  let reads = 0;
  new Gauge({
    name: 'temp',
    help: 'Read at scrape time\nsecond line',
    registers,
    collect() {
      reads++;
      this.set(21.5);
    },
  });
  const latency = new Histogram({
    name: 'lat_seconds',
    help: 'Latency',
    labelNames: ['model'],
    buckets: [0.5, 0.1, 1],
    registers,
  });
  for (const v of [0.05, 0.1, 0.2, 0.7, 3]) latency.observe({ model: 'a' }, v);

  const text = await registry.metrics();
  assert.equal(reads, 1);
  assert.equal(
    text,
    [
      '# HELP req_total Requests',
      '# TYPE req_total counter',
      'req_total{model="a",code="200"} 3',
      'req_total{model="quote\\"back\\\\slash\\nline",code="500"} 1',
      '# HELP idle_total Never incremented',
      '# TYPE idle_total counter',
      'idle_total 0',
      '# HELP temp Read at scrape time\\nsecond line',
      '# TYPE temp gauge',
      'temp 21.5',
      '# HELP lat_seconds Latency',
      '# TYPE lat_seconds histogram',
      'lat_seconds_bucket{model="a",le="0.1"} 2',
      'lat_seconds_bucket{model="a",le="0.5"} 3',
      'lat_seconds_bucket{model="a",le="1"} 4',
      'lat_seconds_bucket{model="a",le="+Inf"} 5',
      'lat_seconds_sum{model="a"} 4.05',
      'lat_seconds_count{model="a"} 5',
      '',
    ].join('\n'),
  );
  assert.equal(registry.contentType, 'text/plain; version=0.0.4; charset=utf-8');
});

test('bad use is refused: a counter going down, a name registered twice, an invalid name', () => {
  const registry = new Registry();
  const c = new Counter({ name: 'x_total', help: 'x', registers: [registry] });
  assert.throws(() => c.inc(undefined, -1), /only goes up/);
  assert.throws(
    () => new Counter({ name: 'x_total', help: 'again', registers: [registry] }),
    /already registered/,
  );
  assert.throws(() => new Gauge({ name: 'bad-name', help: 'x' }), /invalid metric name/);
});

test('a gauge filled at scrape time can start from nothing (reset) each time', async () => {
  const registry = new Registry();
  let models = ['a', 'b'];
  new Gauge({
    name: 'loaded',
    help: 'Loaded models',
    labelNames: ['model'],
    registers: [registry],
    collect() {
      this.reset();
      for (const m of models) this.set({ model: m }, 1);
    },
  });
  assert.match(await registry.metrics(), /loaded\{model="b"\} 1/);
  models = ['a'];
  assert.doesNotMatch(await registry.metrics(), /model="b"/);
});
