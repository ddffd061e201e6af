import type { Director } from '../director/director.ts';
import type { DeviceService } from '../fleet/devices.ts';
import type { Logger } from '../log.ts';
import type { RolloutEngine } from '../rollout/engine.ts';
import type { Repository } from '../store/repository.ts';
import type { TufHost } from '../tuf/repo-host.ts';

/** What the HTTP routes are given: the control plane's parts, built by its composition root. */
export interface Services {
  operatorToken: string;
  repo: Repository;
  tuf: TufHost;
  director: Director;
  rollouts: RolloutEngine;
  devices: DeviceService;
  now: () => number;
  log: Logger;
  maxUploadBytes: number;
  defaultDeviceTimeoutMs: number;
}
