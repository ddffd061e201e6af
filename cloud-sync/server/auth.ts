import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { OutpostError } from '../../shared/errors.ts';

/**
 * Device credentials and enrolment tokens are 256 random bits, so a plain sha256 is a safe
 * way to store them (there is nothing to brute-force, unlike a password) and lets the
 * credential be looked up by its hash in one indexed query.
 */
export function newSecret(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function bearer(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (typeof h !== 'string' || !h.startsWith('Bearer ')) return undefined;
  const token = h.slice(7).trim();
  return token === '' ? undefined : token;
}

/** Constant-time comparison of the operator token (compared as hashes, so lengths match). */
export function checkOperator(req: FastifyRequest, operatorToken: string): void {
  const given = bearer(req);
  if (given === undefined)
    throw new OutpostError('UNAUTHORIZED', 'the admin API needs Authorization: Bearer <operator token>');
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(operatorToken).digest();
  if (!timingSafeEqual(a, b)) throw new OutpostError('UNAUTHORIZED', 'wrong operator token');
}
