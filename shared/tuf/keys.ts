import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Key, Signature } from '@tufjs/models';
import { OutpostError } from '../errors.ts';

/** The public half of a key as TUF metadata spells it (`keys` in root, `keyval.public` = hex). */
export interface PublicKeyJson {
  keytype: 'ed25519';
  scheme: 'ed25519';
  keyval: { public: string };
}

/** What a private key file holds. Written 0600; `private` is PKCS#8 PEM. */
interface PrivateKeyFile extends PublicKeyJson {
  keyid: string;
  private: string;
}

/**
 * An Ed25519 signing key. The private half lives in a private class field so that
 * logging, JSON.stringify or util.inspect of a SigningKey can never print it.
 */
export class SigningKey {
  readonly keyId: string;
  readonly publicJson: PublicKeyJson;
  readonly #privateKey: KeyObject;

  constructor(privateKey: KeyObject) {
    if (privateKey.asymmetricKeyType !== 'ed25519')
      throw new OutpostError('BAD_REQUEST', `expected an ed25519 key, got ${privateKey.asymmetricKeyType}`);
    this.#privateKey = privateKey;
    this.publicJson = publicJsonOf(createPublicKey(privateKey));
    this.keyId = keyIdOf(this.publicJson);
  }

  /** The public key as @tufjs/models wants it in a root. */
  tufKey(): Key {
    return toTufKey(this.publicJson);
  }

  /** Raw Ed25519 signature over `data`, hex. */
  signHex(data: Uint8Array): string {
    return sign(null, data, this.#privateKey).toString('hex');
  }

  /** A signer for `Metadata.sign()`. */
  signer(): (data: Buffer) => Signature {
    return (data) => new Signature({ keyID: this.keyId, sig: this.signHex(data) });
  }

  toJSON(): { keyid: string } & PublicKeyJson {
    return { keyid: this.keyId, ...this.publicJson };
  }

  /** PEM of the private key, only for writing a key file. */
  exportPrivatePem(): string {
    return this.#privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  }
}

export function generateKey(): SigningKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  return new SigningKey(privateKey);
}

function publicJsonOf(publicKey: KeyObject): PublicKeyJson {
  const jwk = publicKey.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new OutpostError('INTERNAL', 'ed25519 public key has no x');
  return {
    keytype: 'ed25519',
    scheme: 'ed25519',
    keyval: { public: Buffer.from(jwk.x, 'base64url').toString('hex') },
  };
}

/** A TUF keyid: sha256 over the canonical JSON of the public key (tuf-js does not check it; we do). */
export function keyIdOf(key: PublicKeyJson): string {
  const json = { keytype: key.keytype, scheme: key.scheme, keyval: { public: key.keyval.public } };
  return createHash('sha256').update(canonicalize(json)).digest('hex');
}

export function toTufKey(key: PublicKeyJson): Key {
  return new Key({
    keyID: keyIdOf(key),
    keyType: key.keytype,
    scheme: key.scheme,
    keyVal: { public: key.keyval.public },
  });
}

/** Checks the shape of a public key read from a file or a document. */
export function parsePublicKey(value: unknown, where: string): PublicKeyJson {
  const v = value as Partial<PublicKeyJson> | null;
  const pub = v?.keyval?.public;
  if (
    v === null ||
    typeof v !== 'object' ||
    v.keytype !== 'ed25519' ||
    v.scheme !== 'ed25519' ||
    typeof pub !== 'string' ||
    !/^[0-9a-f]{64}$/.test(pub)
  )
    throw new OutpostError('BAD_REQUEST', `${where}: not an ed25519 public key`);
  return { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: pub } };
}

/** Verifies a raw Ed25519 signature (hex) over `data` with a public key. Never throws. */
export function verifyHex(key: PublicKeyJson, data: Uint8Array, sigHex: string): boolean {
  try {
    const raw = Buffer.from(key.keyval.public, 'hex');
    // SPKI DER for Ed25519 is a fixed 12-byte prefix followed by the raw key.
    const der = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]);
    const publicKey = createPublicKey({ key: der, format: 'der', type: 'spki' });
    return verify(null, data, publicKey, Buffer.from(sigHex, 'hex'));
  } catch {
    return false;
  }
}

/**
 * Writes a private key file with mode 0600 from the first byte on (created with that mode,
 * never chmod-ed after), through a temp file + fsync + rename so a crash leaves either no
 * file or a whole one. Refuses to overwrite an existing key unless `overwrite` is set.
 */
export function writeKeyFile(path: string, key: SigningKey, options: { overwrite?: boolean } = {}): void {
  const body: PrivateKeyFile = { keyid: key.keyId, ...key.publicJson, private: key.exportPrivatePem() };
  const tmp = join(dirname(path), `.${process.pid}.${Date.now()}.key.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(body, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    // link() fails with EEXIST instead of replacing: an atomic "create if absent".
    if (options.overwrite === true) renameSync(tmp, path);
    else linkSync(tmp, path);
  } catch (err) {
    unlinkSync(tmp);
    if ((err as NodeJS.ErrnoException).code === 'EEXIST')
      throw new OutpostError('CONFLICT', `key file ${path} already exists; not overwriting it`, {
        cause: err,
      });
    throw err;
  }
  if (options.overwrite !== true) unlinkSync(tmp);
  fsyncDir(dirname(path));
}

/** Writes a public key (or any non-secret JSON) file, 0644. */
export function writePublicKeyFile(path: string, key: SigningKey | PublicKeyJson): void {
  const json = key instanceof SigningKey ? key.toJSON() : { keyid: keyIdOf(key), ...key };
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, `${JSON.stringify(json, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  fsyncDir(dirname(path));
}

export async function readKeyFile(path: string): Promise<SigningKey> {
  let parsed: Partial<PrivateKeyFile>;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<PrivateKeyFile>;
  } catch (err) {
    // The message names the file only: the content is secret.
    throw new OutpostError('BAD_REQUEST', `cannot read key file ${path}`, { cause: errnoOnly(err) });
  }
  if (typeof parsed.private !== 'string')
    throw new OutpostError('BAD_REQUEST', `${path} is not a private key file`);
  let key: SigningKey;
  try {
    key = new SigningKey(createPrivateKey(parsed.private));
  } catch {
    throw new OutpostError('BAD_REQUEST', `${path} does not hold a usable ed25519 private key`);
  }
  if (parsed.keyid !== undefined && parsed.keyid !== key.keyId)
    throw new OutpostError('BAD_REQUEST', `${path}: keyid does not match the key`);
  return key;
}

export async function readPublicKeyFile(path: string): Promise<PublicKeyJson> {
  return parsePublicKey(JSON.parse(await readFile(path, 'utf8')), path);
}

function errnoOnly(err: unknown): Error {
  // A JSON parse error quotes the input; keep only the errno-style part.
  const code = (err as NodeJS.ErrnoException).code;
  return new Error(code ?? 'unreadable or not JSON');
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * fsyncDir for asynchronous callers: a directory fsync can take milliseconds on flash, and the
 * agent's event loop serves requests meanwhile (the key files' writers above stay synchronous).
 */
export async function fsyncDirAsync(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
