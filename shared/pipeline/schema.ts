import { type Infer, z } from '../schema.ts';

/**
 * A pipeline is data, never code: it says where readings come from, how they are windowed
 * and scaled into the model's input, and what to do with the output. Bundles carry one.
 */
const jsonPayload = z
  .object({
    format: z.literal('json'),
    /** Dot path to the reading inside the JSON body, e.g. `data.accel`; a number or an array of numbers. */
    field: z.string().min(1).default('value'),
  })
  .strict();
const csvPayload = z
  .object({
    format: z.literal('csv'),
    /** 0-based columns to read; all columns when omitted. */
    columns: z.array(z.number().int().min(0)).optional(),
    /** 0-based column holding the sensor key (HTTP push and line streams); not a reading value. */
    keyColumn: z.number().int().min(0).optional(),
  })
  .strict();
const f32Payload = z.object({ format: z.literal('f32le') }).strict();
export const payloadSchema = z.discriminatedUnion('format', [jsonPayload, csvPayload, f32Payload]);

const mqttSource = z
  .object({
    kind: z.literal('mqtt'),
    /** Topic filter; `+name` captures a level, e.g. `sensors/+sensor/accel`. */
    topic: z.string().min(1),
    payload: payloadSchema.default({ format: 'json', field: 'value' }),
    /** The capture that keys windows (one window per sensor); all readings share one window when omitted. */
    key: z.string().optional(),
  })
  .strict();
const httpSource = z
  .object({
    kind: z.literal('http'),
    /** `POST /v1/sensors/{name}` feeds this pipeline. */
    name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
    payload: payloadSchema.default({ format: 'json', field: 'value' }),
    /** JSON field naming the sensor key inside each pushed record; else `?key=` or the source name. */
    keyField: z.string().min(1).optional(),
  })
  .strict();
const linesSource = z
  .object({
    kind: z.literal('lines'),
    /** Name of a line stream declared in the agent config (a file, FIFO or stdin). */
    stream: z.string().min(1),
    payload: z.union([jsonPayload, csvPayload]).default({ format: 'json', field: 'value' }),
    /** JSON field naming the sensor key in each line; all lines share one window when omitted. */
    keyField: z.string().min(1).optional(),
  })
  .strict();
export const sourceSchema = z.discriminatedUnion('kind', [mqttSource, httpSource, linesSource]);

export const windowSchema = z
  .object({
    /** Readings per window (rows of the model input). */
    size: z.number().int().min(1).max(65536),
    /** Readings between the starts of two windows; size = hop gives tumbling windows. */
    hop: z.number().int().min(1).max(65536),
    /** Values per reading (e.g. 3 for x, y, z). */
    channels: z.number().int().min(1).max(4096).default(1),
  })
  .strict()
  .refine((w) => w.hop <= w.size * 16, { message: 'hop may be at most 16 × size', path: ['hop'] });

const numberOrList = z.union([z.number(), z.array(z.number()).min(1)]);
export const scaleSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('standard'), mean: numberOrList, std: numberOrList }).strict(),
  z.object({ kind: z.literal('minmax'), min: numberOrList, max: numberOrList }).strict(),
]);

export const postprocessSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('none') }).strict(),
  z.object({ kind: z.literal('softmax') }).strict(),
  z.object({ kind: z.literal('argmax'), softmax: z.boolean().default(false) }).strict(),
  z
    .object({
      kind: z.literal('topk'),
      k: z.number().int().min(1).max(100),
      softmax: z.boolean().default(false),
    })
    .strict(),
  z
    .object({
      kind: z.literal('threshold'),
      /** The output value is compared against `above`: over it the state turns on. */
      above: z.number(),
      /** The state turns off again only below `above - hysteresis`. */
      hysteresis: z.number().min(0).default(0),
      /** Windows in a row over (or under) the threshold before the state changes. */
      debounce: z.number().int().min(1).default(1),
      /** Event type published on `evt/{event}` when the state changes. */
      event: z
        .string()
        .regex(/^[A-Za-z0-9._-]{1,64}$/)
        .default('anomaly'),
    })
    .strict(),
]);

export const pipelineSchema = z
  .object({
    source: sourceSchema,
    window: windowSchema,
    scale: scaleSchema.optional(),
    /** The model input the window feeds; shaped [1, size, channels] or [1, size*channels] as the model wants. */
    input: z.string().min(1),
    /** The model output postprocessing reads; the first output when omitted. */
    output: z.string().optional(),
    postprocess: postprocessSchema.default({ kind: 'none' }),
    /** Publish every prediction (`all`), or only events from the threshold postprocessor (`events`). */
    publish: z.enum(['all', 'events']).default('all'),
    /** At most this many predictions per second per key; windows beyond it are counted and skipped. */
    rateLimit: z.number().positive().optional(),
  })
  .strict();

export type Pipeline = Infer<typeof pipelineSchema>;
export type PipelineSource = Infer<typeof sourceSchema>;
export type Payload = Infer<typeof payloadSchema>;
export type Postprocess = Infer<typeof postprocessSchema>;
