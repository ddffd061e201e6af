import { ulid } from 'ulid';
import { OutpostError } from '../../shared/errors.ts';
import type { Director } from '../director/director.ts';
import type { Logger } from '../log.ts';
import type {
  DeviceOutcome,
  EventRecord,
  FailureAction,
  Repository,
  RolloutDeviceRecord,
  RolloutRecord,
  RolloutState,
} from '../store/repository.ts';
import { matches, planWaves } from './plan.ts';

export interface RolloutSpec {
  bundle: string;
  version: string;
  selector: Record<string, string>;
  waves: number[];
  maxFailureRate: number;
  minReporting: number;
  soakMs: number;
  deviceTimeoutMs: number;
  onFailure: FailureAction;
}

export interface WaveStatus {
  index: number;
  percent: number;
  devices: number;
  counts: Record<DeviceOutcome, number>;
}

export interface RolloutStatus {
  rollout: RolloutRecord;
  waves: WaveStatus[];
  devices: RolloutDeviceRecord[];
  events: EventRecord[];
}

export interface RolloutEngineOptions {
  repo: Repository;
  director: Director;
  now: () => number;
  log: Logger;
  /** How often running rollouts are evaluated. */
  tickMs: number;
}

/**
 * Staged rollouts as a state machine persisted in the repository: every tick reads the state
 * from storage, so a control plane that restarts mid-rollout resumes where it was. Each
 * transition is recorded as an event with its reason. A device counts as done when the
 * device itself reports the version installed (success), reports a failed install (failure),
 * or stays silent past the device timeout (timeout, counted as a failure): a dead device never
 * holds a rollout up.
 */
export class RolloutEngine {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: RolloutEngineOptions) {}

  start(): void {
    const { repo } = this.options;
    for (const r of repo.listRollouts()) {
      if (r.state === 'running' || r.state === 'paused')
        this.event(
          r.id,
          null,
          'resumed-after-restart',
          r.state,
          r.state,
          `control plane started; rollout ${r.state} at wave ${r.wave + 1}`,
        );
    }
    this.tick();
    this.timer = setInterval(() => this.tick(), this.options.tickMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private event(
    rolloutId: string | null,
    deviceId: string | null,
    type: string,
    from: string | null,
    to: string | null,
    reason: string,
  ): void {
    this.options.repo.addEvent({ ts: this.options.now(), rolloutId, deviceId, type, from, to, reason });
    this.options.log.info({ rolloutId, deviceId, type, from, to }, reason);
  }

  create(spec: RolloutSpec): RolloutRecord {
    const { repo, now } = this.options;
    if (repo.getBundle(spec.bundle, spec.version) === undefined)
      throw new OutpostError('NOT_FOUND', `bundle ${spec.bundle}@${spec.version} has not been published`);
    return repo.transaction(() => {
      const busy = repo
        .listRollouts()
        .find((r) => r.bundle === spec.bundle && (r.state === 'running' || r.state === 'paused'));
      if (busy !== undefined)
        throw new OutpostError(
          'CONFLICT',
          `rollout ${busy.id} of ${spec.bundle} is still ${busy.state}; abort it first`,
        );
      const devices = repo.listDevices().filter((d) => matches(d, spec.selector));
      if (devices.length === 0) throw new OutpostError('BAD_REQUEST', 'the selector matches no device');
      const id = ulid(now());
      const at = now();
      const rollout: RolloutRecord = {
        id,
        ...spec,
        state: 'running',
        wave: 0,
        waveStartedAt: at,
        soakStartedAt: null,
        createdAt: at,
        updatedAt: at,
        reason: 'created',
      };
      repo.createRollout(rollout);
      const plan = planWaves(
        id,
        devices.map((d) => d.id),
        spec.waves,
      );
      plan.forEach((ids, wave) => {
        for (const deviceId of ids) {
          const previous =
            repo.getAssignments(deviceId).find((a) => a.model === spec.bundle)?.version ?? null;
          repo.addRolloutDevice({
            rolloutId: id,
            deviceId,
            wave,
            previousVersion: previous,
            assignedAt: null,
            outcome: 'pending',
            outcomeAt: null,
            detail: null,
          });
        }
      });
      this.event(
        id,
        null,
        'created',
        null,
        'running',
        `rollout of ${spec.bundle}@${spec.version} to ${devices.length} devices in waves ${plan.map((w) => w.length).join('/')}`,
      );
      this.startWave(rollout, 0);
      return repo.getRollout(id) as RolloutRecord;
    });
  }

  private startWave(rollout: RolloutRecord, wave: number): void {
    const { repo, director, now } = this.options;
    const devices = repo.listRolloutDevices(rollout.id).filter((d) => d.wave === wave);
    for (const d of devices) {
      director.assign(d.deviceId, rollout.bundle, rollout.version, rollout.id);
      repo.updateRolloutDevice(rollout.id, d.deviceId, {
        assignedAt: now(),
        outcome: 'pending',
        outcomeAt: null,
        detail: null,
      });
    }
    repo.updateRollout(rollout.id, { wave, waveStartedAt: now(), soakStartedAt: null, updatedAt: now() });
    this.event(
      rollout.id,
      null,
      'wave-started',
      `wave ${wave}`,
      `wave ${wave + 1}`,
      `wave ${wave + 1} (${rollout.waves[wave]}%): ${devices.length} devices told to install`,
    );
  }

  /** A device's report of an install outcome: a failure counts at once, even after an earlier success. */
  recordOutcome(deviceId: string, model: string, version: string, ok: boolean, detail: string): void {
    const { repo, now } = this.options;
    for (const r of repo.listRollouts()) {
      if (r.bundle !== model || r.version !== version || (r.state !== 'running' && r.state !== 'paused'))
        continue;
      const d = repo.listRolloutDevices(r.id).find((x) => x.deviceId === deviceId);
      if (d === undefined || d.assignedAt === null) continue;
      if (ok || d.outcome === 'failure') continue;
      repo.updateRolloutDevice(r.id, deviceId, { outcome: 'failure', outcomeAt: now(), detail });
      this.event(r.id, deviceId, 'device-failed', d.outcome, 'failure', `device reported: ${detail}`);
    }
  }

  /** Evaluates every running rollout once; errors are logged per rollout, never thrown. */
  tick(): void {
    for (const r of this.options.repo.listRollouts()) {
      if (r.state !== 'running') continue;
      try {
        this.options.repo.transaction(() => this.evaluate(r));
      } catch (err) {
        this.options.log.error({ err, rolloutId: r.id }, 'rollout evaluation failed');
      }
    }
  }

  private evaluate(r: RolloutRecord): void {
    const { repo, now } = this.options;
    const at = now();
    const devices = repo.listRolloutDevices(r.id).filter((d) => d.wave <= r.wave);
    for (const d of devices) {
      if (d.outcome !== 'pending' || d.assignedAt === null) continue;
      const device = repo.getDevice(d.deviceId);
      const runs = device?.installed.some(
        (m) =>
          m.name === r.bundle &&
          m.version === r.version &&
          (m.state === undefined || m.state === 'READY' || m.state === 'active'),
      );
      if (runs === true) {
        repo.updateRolloutDevice(r.id, d.deviceId, {
          outcome: 'success',
          outcomeAt: at,
          detail: 'device reports it runs the version',
        });
        d.outcome = 'success';
        this.event(
          r.id,
          d.deviceId,
          'device-succeeded',
          'pending',
          'success',
          `device reports ${r.bundle}@${r.version} running`,
        );
      } else if (at - d.assignedAt > r.deviceTimeoutMs) {
        const detail = `no report of ${r.version} within ${Math.round(r.deviceTimeoutMs / 1000)} s`;
        repo.updateRolloutDevice(r.id, d.deviceId, { outcome: 'timeout', outcomeAt: at, detail });
        d.outcome = 'timeout';
        this.event(r.id, d.deviceId, 'device-timed-out', 'pending', 'timeout', detail);
      }
    }
    const total = devices.length;
    const failed = devices.filter((d) => d.outcome === 'failure' || d.outcome === 'timeout').length;
    const done = devices.filter((d) => d.outcome !== 'pending').length;
    const needed = Math.min(r.minReporting, total);
    const rate = done === 0 ? 0 : failed / done;
    if (done >= needed && done > 0 && rate > r.maxFailureRate) {
      const reason = `wave ${r.wave + 1} gate failed: ${failed} of ${done} reporting devices failed (${(rate * 100).toFixed(1)}% > ${(r.maxFailureRate * 100).toFixed(1)}%)`;
      this.revert(r, reason);
      this.transition(r, r.onFailure === 'abort' ? 'aborted' : 'paused', reason);
      return;
    }
    if (done < total) return;
    if (r.soakStartedAt === null) {
      repo.updateRollout(r.id, { soakStartedAt: at, updatedAt: at });
      this.event(
        r.id,
        null,
        'gate-passed',
        `wave ${r.wave + 1}`,
        'soaking',
        `wave ${r.wave + 1} gate passed: ${done - failed}/${total} installed, ${failed} failed; soaking ${Math.round(r.soakMs / 1000)} s`,
      );
      if (r.soakMs > 0) return;
    } else if (at - r.soakStartedAt < r.soakMs) return;
    if (r.wave + 1 >= r.waves.length) {
      this.transition(r, 'completed', `all ${total} devices run ${r.bundle}@${r.version}`);
      return;
    }
    this.startWave(r, r.wave + 1);
  }

  private transition(r: RolloutRecord, to: RolloutState, reason: string): void {
    this.options.repo.updateRollout(r.id, { state: to, reason, updatedAt: this.options.now() });
    this.event(r.id, null, 'state', r.state, to, reason);
  }

  /** Puts every device this rollout touched back on the version it had before. */
  private revert(r: RolloutRecord, reason: string): void {
    const { repo, director } = this.options;
    let n = 0;
    for (const d of repo.listRolloutDevices(r.id)) {
      if (d.assignedAt === null) continue;
      const current = repo.getAssignments(d.deviceId).find((a) => a.model === r.bundle);
      if (current?.version !== r.version) continue;
      director.assign(d.deviceId, r.bundle, d.previousVersion, null);
      n++;
    }
    this.event(
      r.id,
      null,
      'reverted',
      r.version,
      'previous',
      `desired state of ${n} devices reverted: ${reason}`,
    );
  }

  private get(id: string): RolloutRecord {
    const r = this.options.repo.getRollout(id);
    if (r === undefined) throw new OutpostError('NOT_FOUND', `no rollout ${id}`);
    return r;
  }

  /** Operator pause: waves stop advancing; devices keep what they were told. */
  pause(id: string, reason = 'paused by operator'): RolloutRecord {
    const r = this.get(id);
    if (r.state !== 'running') throw new OutpostError('CONFLICT', `rollout ${id} is ${r.state}, not running`);
    this.transition(r, 'paused', reason);
    return this.get(id);
  }

  /** Resumes a paused rollout; devices a failed gate reverted are told to install again. */
  resume(id: string, reason = 'resumed by operator'): RolloutRecord {
    const { repo, director, now } = this.options;
    const r = this.get(id);
    if (r.state !== 'paused') throw new OutpostError('CONFLICT', `rollout ${id} is ${r.state}, not paused`);
    repo.transaction(() => {
      for (const d of repo.listRolloutDevices(r.id)) {
        if (d.wave > r.wave || d.assignedAt === null) continue;
        const current = repo.getAssignments(d.deviceId).find((a) => a.model === r.bundle);
        if (current?.version === r.version && d.outcome === 'success') continue;
        director.assign(d.deviceId, r.bundle, r.version, r.id);
        repo.updateRolloutDevice(r.id, d.deviceId, {
          assignedAt: now(),
          outcome: 'pending',
          outcomeAt: null,
          detail: null,
        });
      }
      repo.updateRollout(r.id, { soakStartedAt: null, waveStartedAt: now() });
      this.transition(r, 'running', reason);
    });
    return this.get(id);
  }

  /** Operator abort: terminal; every device the rollout touched goes back to its previous version. */
  abort(id: string, reason = 'aborted by operator'): RolloutRecord {
    const r = this.get(id);
    if (r.state !== 'running' && r.state !== 'paused')
      throw new OutpostError('CONFLICT', `rollout ${id} is already ${r.state}`);
    this.options.repo.transaction(() => {
      this.revert(r, reason);
      this.transition(r, 'aborted', reason);
    });
    return this.get(id);
  }

  status(id: string): RolloutStatus {
    const { repo } = this.options;
    const rollout = this.get(id);
    const devices = repo.listRolloutDevices(id);
    const waves = rollout.waves.map((percent, index) => {
      const inWave = devices.filter((d) => d.wave === index);
      const counts: Record<DeviceOutcome, number> = { pending: 0, success: 0, failure: 0, timeout: 0 };
      for (const d of inWave) counts[d.outcome]++;
      return { index, percent, devices: inWave.length, counts };
    });
    return { rollout, waves, devices, events: repo.listEvents({ rolloutId: id }) };
  }
}
