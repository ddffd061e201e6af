import { mkdir, readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Metadata, Root } from '@tufjs/models';
import { OutpostError } from '../../shared/errors.ts';
import {
  metadataBytes,
  parseRoot,
  type RoleName,
  readKeyFile,
  type SigningKey,
  writeFileAtomic,
  writeKeyFile,
  writePublicKeyFile,
} from '../../shared/tuf/index.ts';

/**
 * The operator's key directory: one 0600 file per private key (`<role>-<keyid16>.key.json`),
 * its public half beside it, and the signed roots (`N.root.json`, `root.json` = latest).
 * Offline keys may be missing here (kept on another machine): signing uses the ones present
 * and refuses when they cannot reach the role's threshold.
 */
export class KeyStore {
  private constructor(
    readonly dir: string,
    private latest: Metadata<Root> | undefined,
  ) {}

  static async create(dir: string): Promise<KeyStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const existing = await readFile(join(dir, 'root.json')).catch(() => undefined);
    if (existing !== undefined)
      throw new OutpostError('CONFLICT', `${dir} already holds a root; refusing to overwrite its keys`);
    return new KeyStore(dir, undefined);
  }

  static async open(dir: string): Promise<KeyStore> {
    const bytes = await readFile(join(dir, 'root.json')).catch((err: unknown) => {
      throw new OutpostError('NOT_FOUND', `${dir} holds no root.json (run outpost keys init)`, {
        cause: err,
      });
    });
    return new KeyStore(dir, parseRoot(bytes));
  }

  get root(): Metadata<Root> {
    if (this.latest === undefined) throw new OutpostError('INTERNAL', 'no root yet');
    return this.latest;
  }

  keyPath(role: RoleName, keyId: string): string {
    return join(this.dir, `${role}-${keyId.slice(0, 16)}.key.json`);
  }

  save(role: RoleName, key: SigningKey): void {
    writeKeyFile(this.keyPath(role, key.keyId), key);
    writePublicKeyFile(this.keyPath(role, key.keyId).replace(/\.key\.json$/, '.pub.json'), key);
  }

  async writeRoot(root: Metadata<Root>): Promise<void> {
    const bytes = metadataBytes(root);
    await writeFileAtomic(join(this.dir, `${root.signed.version}.root.json`), bytes);
    await writeFileAtomic(join(this.dir, 'root.json'), bytes);
    this.latest = root;
  }

  /** The private keys present for a role as `root` names it; throws below the threshold. */
  async signers(role: RoleName, root: Metadata<Root> = this.root): Promise<SigningKey[]> {
    const r = root.signed.roles[role];
    if (r === undefined) throw new OutpostError('NOT_FOUND', `root has no ${role} role`);
    const keys: SigningKey[] = [];
    for (const id of r.keyIDs) {
      const key = await readKeyFile(this.keyPath(role, id)).catch(() => undefined);
      if (key !== undefined && key.keyId === id) keys.push(key);
    }
    if (keys.length < r.threshold)
      throw new OutpostError(
        'FORBIDDEN',
        `only ${keys.length} of the ${r.threshold} ${role} keys needed are in ${this.dir}`,
      );
    return keys;
  }

  /** Moves a role's old key files to `retired/` (kept: an auditor may need the public halves). */
  async retire(role: RoleName, keyIds: readonly string[]): Promise<void> {
    const retired = join(this.dir, 'retired');
    await mkdir(retired, { recursive: true, mode: 0o700 });
    const names = new Set(await readdir(this.dir));
    for (const id of keyIds) {
      for (const suffix of ['.key.json', '.pub.json']) {
        const name = `${role}-${id.slice(0, 16)}${suffix}`;
        if (names.has(name)) await rename(join(this.dir, name), join(retired, name));
      }
    }
  }
}
