import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export interface DeviceCredential {
  deviceId: string;
  /** The secret the control plane issued at enrolment (it keeps only a hash). */
  credential: string;
  url: string;
}

export function readCredential(path: string): DeviceCredential | undefined {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as Partial<DeviceCredential>;
    if (typeof v.deviceId === 'string' && typeof v.credential === 'string' && typeof v.url === 'string')
      return { deviceId: v.deviceId, credential: v.credential, url: v.url };
  } catch {
    // absent or unreadable: the device enrols (again)
  }
  return undefined;
}

/** 0600 from creation, temp + fsync + rename: a crash leaves the old file or the new one. */
export function writeCredential(path: string, cred: DeviceCredential): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(cred)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dfd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}
