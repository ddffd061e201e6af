import { pipelineSchema } from '../pipeline/schema.ts';
import { type Infer, z } from '../schema.ts';
import { DATATYPES } from '../tensor.ts';

/** A file name inside a bundle: one path segment, no traversal, no hidden files. */
export const safeFileName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be a plain file name (letters, digits, . _ -)')
  .refine((s) => !s.includes('..'), 'must not contain ".."');

export const modelName = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
    'must be 1-64 letters, digits, . _ - (it becomes an MQTT topic level)',
  );

export const semver = z
  .string()
  .regex(
    /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/,
    'must be semver',
  );

const tensorSpec = z
  .object({
    name: z.string().min(1),
    datatype: z.enum(DATATYPES),
    /** -1 for a dynamic dimension. */
    shape: z.array(z.number().int().min(-1)),
  })
  .strict();

const sampleTensor = z
  .object({
    shape: z.array(z.number().int().min(0)),
    data: z.array(z.union([z.number(), z.string(), z.boolean()])),
  })
  .strict();

export const manifestSchema = z
  .object({
    schema: z.literal(1),
    name: modelName,
    version: semver,
    /** Monotonic across versions of this model; a device never installs a lower one. */
    releaseCounter: z.number().int().min(0),
    description: z.string().max(2000).optional(),
    model: z
      .object({
        file: safeFileName,
        sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
        size: z.number().int().positive(),
      })
      .strict(),
    signature: z.object({ inputs: z.array(tensorSpec).min(1), outputs: z.array(tensorSpec).min(1) }).strict(),
    labels: z.array(z.string()).optional(),
    pipeline: pipelineSchema.optional(),
    batching: z
      .object({
        maxBatchSize: z.number().int().min(1).max(1024),
        maxQueueDelayMs: z.number().min(0).max(1000),
      })
      .strict()
      .optional(),
    compat: z
      .object({
        arch: z.array(z.enum(['x64', 'arm64'])).min(1),
        minAgentVersion: semver,
      })
      .strict(),
    /** The activation health check: these inputs must give these outputs within tolerance. */
    sample: z
      .object({
        inputs: z.record(z.string(), sampleTensor),
        outputs: z.record(z.string(), sampleTensor),
        tolerance: z
          .object({ abs: z.number().min(0).default(1e-5), rel: z.number().min(0).default(1e-4) })
          .strict()
          .default({ abs: 1e-5, rel: 1e-4 }),
      })
      .strict(),
  })
  .strict();

export type BundleManifest = Infer<typeof manifestSchema>;
export type TensorSpec = Infer<typeof tensorSpec>;
export const MANIFEST_FILE = 'outpost.bundle.json';
