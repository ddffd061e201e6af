import { accessSync, constants, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { errorMessage } from '../shared/errors.ts';
import { GraphBuilder } from '../shared/onnx/builder.ts';
import type { AgentConfig } from './config.ts';
import { runCommand } from './run-command.ts';
import { StorageBudget } from './storage/budget.ts';
import { connectionOptions } from './uplink/mqtt-options.ts';

/**
 * `outpost-agent doctor`: the checks an operator runs when a device is unhappy. Each check
 * answers pass, warn, fail or skip with a sentence a person can act on; any fail makes the
 * command exit non-zero.
 */
export type CheckState = 'pass' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  name: string;
  state: CheckState;
  detail: string;
}

export interface DoctorOptions {
  /** Loads the config; a throw becomes the config check's failure. */
  loadConfig: () => Readonly<AgentConfig>;
  configSource: string;
  now?: () => Date;
  /** Clock skew beyond this is a warning, beyond 5× a failure (TUF expiry and TLS need a sane clock). */
  skewWarnMs?: number;
  /** The oldest plausible year; a clock before it has not been set since boot. */
  minYear?: number;
  uid?: number;
}

export interface DoctorReport {
  ok: boolean;
  checks: CheckResult[];
}

export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const checks: CheckResult[] = [];
  let config: Readonly<AgentConfig> | undefined;
  try {
    config = options.loadConfig();
    checks.push({ name: 'config', state: 'pass', detail: `${options.configSource} is valid` });
  } catch (err) {
    checks.push({ name: 'config', state: 'fail', detail: errorMessage(err) });
  }
  let serverDate: Date | undefined;
  if (config === undefined) {
    for (const name of ['data-dir', 'storage', 'onnxruntime', 'broker', 'control-plane'])
      checks.push({ name, state: 'skip', detail: 'needs a valid config' });
  } else {
    checks.push(checkDataDir(config.dataDir, options.uid ?? process.getuid?.() ?? -1));
    checks.push(await checkStorage(config));
    checks.push(await checkOnnxRuntime());
    checks.push(await checkBroker(config));
    const cp = await checkControlPlane(config);
    serverDate = cp.serverDate;
    checks.push(cp.result);
  }
  checks.push(checkClock((options.now ?? (() => new Date()))(), serverDate, options));
  return { ok: checks.every((c) => c.state !== 'fail'), checks };
}

export function checkDataDir(dir: string, uid: number): CheckResult {
  const name = 'data-dir';
  let info: ReturnType<typeof statSync>;
  try {
    info = statSync(dir);
  } catch {
    return { name, state: 'fail', detail: `${dir} does not exist (install.sh creates it)` };
  }
  if (!info.isDirectory()) return { name, state: 'fail', detail: `${dir} is not a directory` };
  if ((info.mode & 0o002) !== 0)
    return {
      name,
      state: 'fail',
      detail: `${dir} is world-writable (mode ${mode(info.mode)}); chmod 0750 it`,
    };
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
    const probe = join(dir, `.doctor-${process.pid}`);
    writeFileSync(probe, 'probe');
    rmSync(probe);
  } catch (err) {
    return { name, state: 'fail', detail: `${dir} is not writable by uid ${uid}: ${errorMessage(err)}` };
  }
  // Root can write anywhere, so as root the question is whether a service user owns it.
  if (uid === 0 && info.uid === 0)
    return {
      name,
      state: 'warn',
      detail: `${dir} is owned by root; the service runs as outpost: chown outpost:outpost ${dir}`,
    };
  if (uid > 0 && info.uid !== uid)
    return {
      name,
      state: 'warn',
      detail: `${dir} is writable but owned by uid ${info.uid}, not the agent's uid ${uid}`,
    };
  if ((info.mode & 0o007) !== 0)
    return {
      name,
      state: 'warn',
      detail: `${dir} is readable by others (mode ${mode(info.mode)}); 0750 is enough`,
    };
  return { name, state: 'pass', detail: `${dir} is writable, mode ${mode(info.mode)}` };
}

export async function checkStorage(config: Readonly<AgentConfig>): Promise<CheckResult> {
  const name = 'storage';
  const budget = new StorageBudget({
    dataDir: config.dataDir,
    maxBytes: config.storage.maxBytes,
    reserveFreeBytes: config.storage.reserveFreeBytes,
  });
  try {
    const u = await budget.usage();
    const summary = `${mib(u.total)} of ${mib(u.maxBytes)} used (models ${mib(u.models)}, staging ${mib(u.staging)}, outbox ${mib(u.outbox)}); filesystem has ${mib(u.filesystemFree)} free`;
    if (u.total > u.maxBytes) return { name, state: 'fail', detail: `over budget: ${summary}` };
    if (u.filesystemFree < config.storage.reserveFreeBytes)
      return {
        name,
        state: 'fail',
        detail: `filesystem below the ${mib(config.storage.reserveFreeBytes)} reserve: ${summary}`,
      };
    if (u.total > u.maxBytes * 0.9)
      return { name, state: 'warn', detail: `over 90% of the budget: ${summary}` };
    if (u.filesystemFree < config.storage.maxBytes - u.total)
      return { name, state: 'warn', detail: `the filesystem cannot hold the whole budget: ${summary}` };
    return { name, state: 'pass', detail: summary };
  } catch (err) {
    return { name, state: 'fail', detail: `cannot measure ${config.dataDir}: ${errorMessage(err)}` };
  }
}

/**
 * Loads onnxruntime and runs a one-node model in a child process, so that a build this CPU
 * cannot execute (SIGILL) or a missing shared library fails the check instead of the doctor.
 */
export async function checkOnnxRuntime(timeoutMs = 30_000): Promise<CheckResult> {
  const name = 'onnxruntime';
  const dir = mkdtempSync(join(tmpdir(), 'outpost-doctor-'));
  try {
    const model = join(dir, 'add.onnx');
    const bytes = new GraphBuilder('doctor-add')
      .input('x', 'float', [1, 2])
      .initializer('one', Float32Array.from([1, 1]), [1, 2])
      .node('Add', ['x', 'one'], ['y'])
      .output('y', 'float', [1, 2])
      .toBytes();
    writeFileSync(model, bytes);
    const ortPath = createRequire(import.meta.url).resolve('onnxruntime-node');
    const script = `
      const ort = require(process.argv[1]);
      ort.InferenceSession.create(process.argv[2])
        .then((s) => s.run({ x: new ort.Tensor('float32', Float32Array.from([2, 3]), [1, 2]) }))
        .then((r) => { console.log(JSON.stringify({ y: Array.from(r.y.data), version: ort.env.versions.common })); process.exit(0); })
        .catch((e) => { console.error(e && e.message ? e.message : String(e)); process.exit(1); });`;
    const child = await runCommand(process.execPath, ['-e', script, ortPath, model], { timeoutMs });
    if (child.signal !== null)
      return {
        name,
        state: 'fail',
        detail: `onnxruntime killed the probe with ${child.signal}${child.signal === 'SIGILL' ? ' (this CPU lacks an instruction the build needs)' : ''}`,
      };
    if (child.code !== 0)
      return {
        name,
        state: 'fail',
        detail: `onnxruntime failed to load or run: ${child.stderr.trim().slice(0, 500)}`,
      };
    const out = JSON.parse(child.stdout) as { y: number[]; version: string };
    if (out.y[0] !== 3 || out.y[1] !== 4)
      return { name, state: 'fail', detail: `onnxruntime gave a wrong answer: ${JSON.stringify(out.y)}` };
    return { name, state: 'pass', detail: `onnxruntime ${out.version} runs on ${process.arch}` };
  } catch (err) {
    return { name, state: 'fail', detail: errorMessage(err) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function checkBroker(config: Readonly<AgentConfig>): Promise<CheckResult> {
  const name = 'broker';
  if (!config.uplink.enabled) return { name, state: 'skip', detail: 'uplink disabled' };
  const timeoutMs = config.controlPlane.timeoutMs;
  let client: mqtt.MqttClient | undefined;
  try {
    client = mqtt.connect(config.uplink.url, {
      ...connectionOptions(config.uplink),
      // Not the agent's own client id, so a running agent is not kicked off the broker.
      clientId: `outpost-${config.deviceId}-doctor`,
      protocolVersion: config.uplink.protocol === '3.1.1' ? 4 : 5,
      connectTimeout: timeoutMs,
      reconnectPeriod: 0,
      clean: true,
    });
    const c = client;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no CONNACK within ${timeoutMs} ms`)), timeoutMs);
      c.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      c.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      c.once('close', () => {
        clearTimeout(timer);
        reject(new Error('connection closed before CONNACK'));
      });
    });
    return { name, state: 'pass', detail: `connected to ${config.uplink.url}` };
  } catch (err) {
    return { name, state: 'fail', detail: `cannot connect to ${config.uplink.url}: ${errorMessage(err)}` };
  } finally {
    client?.end(true);
  }
}

export async function checkControlPlane(
  config: Readonly<AgentConfig>,
): Promise<{ result: CheckResult; serverDate: Date | undefined }> {
  const name = 'control-plane';
  const url = config.controlPlane.url;
  if (url === undefined)
    return { result: { name, state: 'skip', detail: 'controlPlane.url not set' }, serverDate: undefined };
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(config.controlPlane.timeoutMs) });
    await res.body?.cancel();
    const header = res.headers.get('date');
    const serverDate = header === null ? undefined : new Date(header);
    const state: CheckState = res.status >= 500 ? 'warn' : 'pass';
    return {
      result: { name, state, detail: `${url} answered HTTP ${res.status}` },
      serverDate: serverDate !== undefined && Number.isFinite(serverDate.getTime()) ? serverDate : undefined,
    };
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    return {
      result: {
        name,
        state: 'fail',
        detail: `${url} unreachable: ${errorMessage(err)}${cause === undefined ? '' : ` (${errorMessage(cause)})`}`,
      },
      serverDate: undefined,
    };
  }
}

export function checkClock(
  now: Date,
  serverDate: Date | undefined,
  options: Pick<DoctorOptions, 'skewWarnMs' | 'minYear'> = {},
): CheckResult {
  const name = 'clock';
  const minYear = options.minYear ?? 2025;
  if (now.getUTCFullYear() < minYear)
    return {
      name,
      state: 'fail',
      detail: `the clock says ${now.toISOString()}; it has not been set (enable systemd-timesyncd or an RTC)`,
    };
  if (serverDate === undefined)
    return { name, state: 'pass', detail: `${now.toISOString()} (no control plane to compare with)` };
  const warnMs = options.skewWarnMs ?? 30_000;
  // The Date header has one-second resolution, so a second of skew is noise.
  const skew = now.getTime() - serverDate.getTime();
  const text = `${Math.round(skew / 1000)} s ${skew >= 0 ? 'ahead of' : 'behind'} the control plane`;
  if (Math.abs(skew) > warnMs * 5)
    return { name, state: 'fail', detail: `${text}; signed metadata expiry and TLS need a correct clock` };
  if (Math.abs(skew) > warnMs) return { name, state: 'warn', detail: text };
  return { name, state: 'pass', detail: text };
}

export function formatReport(report: DoctorReport): string {
  const lines = report.checks.map(
    (c) => `${c.state.toUpperCase().padEnd(4)}  ${c.name.padEnd(13)} ${c.detail}`,
  );
  const failed = report.checks.filter((c) => c.state === 'fail').length;
  lines.push('', report.ok ? 'all checks passed' : `${failed} check${failed === 1 ? '' : 's'} failed`);
  return lines.join('\n');
}

function mode(m: number): string {
  return `0${(m & 0o777).toString(8)}`;
}

function mib(bytes: number): string {
  if (!Number.isFinite(bytes)) return '∞';
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
