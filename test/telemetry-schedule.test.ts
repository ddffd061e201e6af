import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import cron from 'node-cron';
import { clockOnly, schedule } from '../agent/telemetry/schedule.ts';

const CLOCK_ONLY = [
  '*/60 * * * * *',
  '* * * * * *',
  '*/7 * * * * *',
  '15 * * * * *',
  '0,20,40 * * * * *',
  '* * * * *',
];

test('clock-only expressions match exactly the times node-cron matches, in any time zone', () => {
  // Zones whose offsets are not whole hours, one with a half-hour daylight-saving shift.
  const zones = ['UTC', 'Asia/Kathmandu', 'America/St_Johns', 'Australia/Lord_Howe'];
  const tasks = CLOCK_ONLY.flatMap((e) =>
    zones.map((timezone) => ({
      e,
      timezone,
      task: cron.createTask(e, () => {}, { timezone }),
      ours: clockOnly(e),
    })),
  );
  // Every second of an hour, then seconds spread over years: the clock-only match must agree
  // with node-cron's own matcher (which reads the local time through Intl) everywhere.
  const start = Date.UTC(2026, 11, 7, 3, 0, 0);
  const times = [
    ...Array.from({ length: 3600 }, (_, i) => start + i * 1000),
    ...Array.from({ length: 1000 }, (_, i) => start + i * 104_729_000),
  ];
  for (const { e, timezone, task, ours } of tasks) {
    assert.ok(ours !== undefined, `${e} is clock-only`);
    for (const t of times) {
      const d = new Date(t);
      assert.equal(ours(d), task.match(d), `${e} at ${d.toISOString()} in ${timezone}`);
    }
    void task.destroy();
  }
});

test('expressions that name minutes, hours, days, months or weekdays, ranges or names, are left to node-cron', () => {
  for (const e of [
    '0 0 3 * * *',
    '0 * 3 * * *',
    '* * * 1 * *',
    '* * * * 2 *',
    '* * * * * 1',
    '1-5 * * * * *',
    '0 0 12 * * MON',
    '@daily',
  ])
    assert.equal(clockOnly(e), undefined, e);
});

test('a schedule fires on its seconds, never overlaps itself, reports failures and stops', async () => {
  const fired: number[] = [];
  const errors: unknown[] = [];
  let running = 0;
  let overlapped = false;
  const s = schedule(
    '* * * * * *',
    async () => {
      fired.push(Date.now());
      running++;
      if (running > 1) overlapped = true;
      // Longer than a second: the runs due meanwhile are skipped, not queued.
      await new Promise((r) => setTimeout(r, 1_500));
      running--;
      if (fired.length === 1) throw new Error('sample failed');
    },
    { name: 'test', onError: (err) => errors.push(err) },
  );
  await new Promise((r) => setTimeout(r, 4_200));
  s.stop();
  const count = fired.length;
  await new Promise((r) => setTimeout(r, 1_300));
  assert.equal(fired.length, count, 'nothing fires after stop()');
  assert.ok(count >= 2 && count <= 3, `fired ${count} times in 4.2 s with 1.5 s runs`);
  assert.equal(overlapped, false);
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]), /sample failed/);
  // Each run started on a whole second (timers fire late, never early, by a few ms here).
  for (const t of fired) assert.ok(t % 1000 < 200, `fired ${t % 1000} ms past the second`);
  assert.throws(
    () => schedule('not cron', async () => {}, { name: 'bad', onError: () => {} }),
    /not a valid cron/,
  );
});

test('a clock-only schedule makes no Intl date formatter; one that names hours does (node-cron)', () => {
  // node-cron reads every time through Intl.DateTimeFormat, which loads ICU's date and zone
  // data into the process. Counted here by wrapping the constructor before anything runs.
  const script = `
    const Original = Intl.DateTimeFormat;
    let made = 0;
    Intl.DateTimeFormat = function (...args) { made++; return new Original(...args); };
    const { schedule } = await import('./agent/telemetry/schedule.ts');
    let runs = 0;
    const clock = schedule('* * * * * *', async () => { runs++; }, { name: 'clock', onError: () => {} });
    await new Promise((r) => setTimeout(r, 1_300));
    clock.stop();
    const clockMade = made;
    const daily = schedule('0 0 12 * * *', async () => {}, { name: 'daily', onError: () => {} });
    daily.stop();
    console.log(JSON.stringify({ runs, clockMade, dailyMade: made - clockMade }));
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: new URL('..', import.meta.url),
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Record<string, number>;
  assert.ok((out.runs ?? 0) >= 1, 'the clock-only schedule ran');
  assert.equal(out.clockMade, 0);
  assert.ok((out.dailyMade ?? 0) > 0, 'node-cron made formatters for the daily schedule');
});
