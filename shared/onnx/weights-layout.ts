import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { basename } from 'node:path';

/**
 * Where a model's large weights sit in its file, and two uses of that.
 *
 * - At build time, `alignWeights` moves each large initializer's bytes (TensorProto.raw_data) to
 *   a file offset that is a multiple of WEIGHT_ALIGN, by putting a padding field that ONNX does
 *   not define in front of them. Protobuf readers skip fields they do not know, so the model
 *   means exactly what it meant before; it is only laid out differently, as zipalign does for
 *   Android packages.
 * - At load time, `weightlessModel` builds a copy of the model's protobuf in which each aligned
 *   large initializer is ONNX external data pointing back into the model file itself. Given that
 *   copy, onnxruntime maps those bytes from the page cache. Given the file, it parses every
 *   weight into a protobuf string and then copies it again into a tensor: for a 50 MB model that
 *   is 100 MB of fresh memory and its page faults, on the install's critical path.
 *
 * Only a laid-out model is mapped, all its large initializers or none. An unaligned one would
 * reach onnxruntime's kernels at an address that need not be a multiple of its element size,
 * which C++ code may assume it is; and a model with large weights left inline would have them
 * read into the weightless copy and then parsed again, which costs more than loading the file.
 */

/** TensorProto field number of the padding. ONNX's own TensorProto fields stay below 20. */
export const PAD_FIELD = 20304;
/** Offset alignment of mapped weights: a cache line, and onnxruntime's own allocation alignment. */
export const WEIGHT_ALIGN = 64;
/** Initializers smaller than this stay in the protobuf: mapping them saves little and costs a mapping each. */
export const MAPPED_MIN_BYTES = 64 * 1024;

/** Protobuf wire types. */
const WIRE = { VARINT: 0, I64: 1, LEN: 2, I32: 5 } as const;
/** onnx.proto field numbers, by message. */
const FIELD = {
  MODEL_GRAPH: 7,
  GRAPH_INITIALIZER: 5,
  TENSOR_SEGMENT: 3,
  TENSOR_RAW_DATA: 9,
  TENSOR_EXTERNAL_DATA: 13,
  TENSOR_DATA_LOCATION: 14,
  ENTRY_KEY: 1,
  ENTRY_VALUE: 2,
} as const;
/** TensorProto.DataLocation.EXTERNAL */
const DATA_LOCATION_EXTERNAL = 1;

/** The model's protobuf is not one this module lays out (it is left as it is). */
export class LayoutError extends Error {
  override name = 'LayoutError';
}

interface Field {
  field: number;
  wire: number;
  /** Offset of the tag. */
  start: number;
  /** Offset of the value (after the length, for length-delimited fields). */
  body: number;
  end: number;
}

interface Source {
  readonly size: number;
  /** Whether what `bytes` returns stays valid (else it is copied before the next read). */
  readonly stable: boolean;
  /** The bytes in [start, end); may be a view that the next call invalidates. */
  bytes(start: number, end: number): Uint8Array;
}

function memorySource(buf: Uint8Array): Source {
  return { size: buf.length, stable: true, bytes: (start, end) => buf.subarray(start, end) };
}

const WINDOW = 64 * 1024;

/**
 * Positioned reads through a 64 KiB window: walking a model's fields reads its structure and
 * skips its weights, so a 50 MB model costs a few small reads.
 */
class FileSource implements Source {
  readonly size: number;
  readonly stable = false;
  private window = Buffer.alloc(0);
  private windowAt = 0;

  constructor(private readonly fd: number) {
    this.size = fstatSync(fd).size;
  }

  bytes(start: number, end: number): Uint8Array {
    if (start >= this.windowAt && end <= this.windowAt + this.window.length)
      return this.window.subarray(start - this.windowAt, end - this.windowAt);
    const want = end - start;
    const buf = Buffer.allocUnsafe(Math.max(want, Math.min(WINDOW, this.size - start)));
    let got = 0;
    while (got < buf.length) {
      const n = readSync(this.fd, buf, got, buf.length - got, start + got);
      if (n === 0) break;
      got += n;
    }
    if (got < want) throw new LayoutError(`the file ended at ${start + got}, inside a field`);
    this.window = buf.subarray(0, got);
    this.windowAt = start;
    return this.window.subarray(0, want);
  }
}

/**
 * A varint at `pos` of at most `maxBytes` bytes. Values are checked against `max` (tags and
 * lengths): protobuf reads those as 32-bit, and a walker that read a longer one differently from
 * onnxruntime's parser could take a field for another. Skipped values are not checked: a
 * negative int64 is a 10-byte varint and means nothing to the layout.
 */
function readVarint(
  src: Source,
  pos: number,
  limit: number,
  maxBytes: number,
  max: number,
): { value: number; next: number } {
  const b = src.bytes(pos, Math.min(pos + maxBytes, limit));
  let value = 0;
  let scale = 1;
  for (let i = 0; i < b.length; i++) {
    const byte = b[i] as number;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      if (value > max) throw new LayoutError(`a varint at ${pos} is out of range (${value})`);
      return { value, next: pos + i + 1 };
    }
    scale *= 128;
  }
  throw new LayoutError(`a varint at ${pos} does not end within ${maxBytes} bytes`);
}

/** Field numbers are 29 bits; protobuf reads a tag as 32 bits. */
const MAX_TAG = 2 ** 32 - 1;
/** protobuf refuses lengths from 2 GiB on. */
const MAX_LENGTH = 2 ** 31 - 1;

/** The fields of the message in [from, to). */
function fieldsOf(src: Source, from: number, to: number): Field[] {
  const out: Field[] = [];
  let pos = from;
  while (pos < to) {
    const tag = readVarint(src, pos, to, 5, MAX_TAG);
    const field = Math.floor(tag.value / 8);
    const wire = tag.value % 8;
    if (field < 1) throw new LayoutError(`field number 0 at ${pos}`);
    let body = tag.next;
    let end: number;
    if (wire === WIRE.VARINT) end = readVarint(src, body, to, 10, Number.POSITIVE_INFINITY).next;
    else if (wire === WIRE.I64) end = body + 8;
    else if (wire === WIRE.I32) end = body + 4;
    else if (wire === WIRE.LEN) {
      const len = readVarint(src, body, to, 5, MAX_LENGTH);
      body = len.next;
      end = body + len.value;
    } else throw new LayoutError(`wire type ${wire} at ${pos} (groups are not used by ONNX)`);
    if (end > to) throw new LayoutError(`a field at ${pos} runs past the end of its message`);
    out.push({ field, wire, start: pos, body, end });
    pos = end;
  }
  return out;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/**
 * `n` as a varint of `size` bytes (at least its own size). A longer one carries continuation
 * bytes with no value in them, which every protobuf reader accepts.
 */
function varint(n: number, size = varintSize(n)): Uint8Array {
  const out = new Uint8Array(Math.max(size, varintSize(n)));
  for (let i = 0; i < out.length; i++) {
    out[i] = (n % 128) | (i < out.length - 1 ? 0x80 : 0);
    n = Math.floor(n / 128);
  }
  return out;
}

function tag(field: number, wire: number): Uint8Array {
  return varint(field * 8 + wire);
}

/** Byte chunks and their total length, concatenated once at the end. */
class Parts {
  readonly chunks: Uint8Array[] = [];
  length = 0;

  push(...chunks: Uint8Array[]): this {
    for (const c of chunks) {
      this.chunks.push(c);
      this.length += c.length;
    }
    return this;
  }

  /** A length-delimited field holding these parts. */
  static field(field: number, body: Parts): Parts {
    return new Parts().push(tag(field, WIRE.LEN), varint(body.length), ...body.chunks);
  }

  concat(): Uint8Array {
    return Buffer.concat(this.chunks, this.length);
  }
}

/** The one graph of a model, or undefined when there is none or it comes in parts (merged on parse). */
function graphOf(top: Field[]): Field | undefined {
  const graphs = top.filter((f) => f.field === FIELD.MODEL_GRAPH);
  return graphs.length === 1 && graphs[0]?.wire === WIRE.LEN ? graphs[0] : undefined;
}

/** A tensor's one raw_data field, when the tensor is large, inline and not in segments. */
function largeRawData(fields: Field[], minBytes: number): Field | undefined {
  const raws = fields.filter((f) => f.field === FIELD.TENSOR_RAW_DATA);
  const raw = raws[0];
  if (raws.length !== 1 || raw === undefined || raw.wire !== WIRE.LEN) return undefined;
  if (raw.end - raw.body < minBytes) return undefined;
  const other = fields.some(
    (f) =>
      f.field === FIELD.TENSOR_EXTERNAL_DATA ||
      f.field === FIELD.TENSOR_DATA_LOCATION ||
      f.field === FIELD.TENSOR_SEGMENT,
  );
  return other ? undefined : raw;
}

/** The tensor's fields other than raw_data and padding, as they were. */
function keptFields(src: Source, fields: Field[], raw: Field): Parts {
  const parts = new Parts();
  for (const f of fields) if (f !== raw && f.field !== PAD_FIELD) parts.push(keepBytes(src, f.start, f.end));
  return parts;
}

function keepBytes(src: Source, start: number, end: number): Uint8Array {
  const b = src.bytes(start, end);
  return src.stable ? b : Uint8Array.from(b);
}

function copyField(src: Source, f: Field): Uint8Array {
  return keepBytes(src, f.start, f.end);
}

const PAD_TAG = tag(PAD_FIELD, WIRE.LEN);

/** A padding field exactly `size` bytes long (size 0: none). */
function padding(size: number): Uint8Array {
  if (size === 0) return new Uint8Array(0);
  for (let n = Math.max(0, size - PAD_TAG.length - 2); n <= size; n++) {
    if (PAD_TAG.length + varintSize(n) + n === size) {
      const out = new Uint8Array(size);
      out.set(PAD_TAG, 0);
      out.set(varint(n), PAD_TAG.length);
      return out;
    }
  }
  throw new LayoutError(`no padding field is ${size} bytes long`);
}

const MIN_PAD = PAD_TAG.length + 1;

/**
 * An initializer laid out at absolute offset `at` with its raw_data last, after a padding
 * field sized so that the data starts at a multiple of `align`.
 */
function alignedTensor(src: Source, t: Field, fields: Field[], raw: Field, at: number, align: number): Parts {
  const kept = keptFields(src, fields, raw);
  const rawLen = raw.end - raw.body;
  const rawHead = new Parts().push(tag(FIELD.TENSOR_RAW_DATA, WIRE.LEN), varint(rawLen));
  const outerTag = tag(t.field, WIRE.LEN);
  let pad = 0;
  for (let attempt = 0; attempt < 8; attempt++) {
    const content = kept.length + pad + rawHead.length + rawLen;
    const dataAt = at + outerTag.length + varintSize(content) + kept.length + pad + rawHead.length;
    const misaligned = dataAt % align;
    if (misaligned === 0) {
      const body = new Parts().push(...kept.chunks, padding(pad), ...rawHead.chunks);
      body.push(keepBytes(src, raw.body, raw.end));
      return Parts.field(t.field, body);
    }
    pad += align - misaligned;
    while (pad < MIN_PAD) pad += align;
  }
  throw new LayoutError(`no padding aligns initializer data at ${at}`);
}

interface GraphEntry {
  field: Field;
  /** A large inline initializer: its fields and its raw_data. */
  large?: { fields: Field[]; raw: Field };
}

/** The graph's fields, read from their headers, with the large initializers picked out. */
function graphEntries(src: Source, graph: Field, minBytes: number): GraphEntry[] {
  return fieldsOf(src, graph.body, graph.end).map((field) => {
    if (field.field !== FIELD.GRAPH_INITIALIZER || field.wire !== WIRE.LEN) return { field };
    const fields = fieldsOf(src, field.body, field.end);
    const raw = largeRawData(fields, minBytes);
    return raw === undefined ? { field } : { field, large: { fields, raw } };
  });
}

/** The graph's fields from absolute offset `at`, each large initializer aligned. */
function alignedGraph(src: Source, entries: GraphEntry[], at: number, align: number) {
  const out = new Parts();
  let aligned = 0;
  for (const { field, large } of entries) {
    if (large === undefined) {
      out.push(copyField(src, field));
      continue;
    }
    out.push(...alignedTensor(src, field, large.fields, large.raw, at + out.length, align).chunks);
    aligned++;
  }
  return { out, aligned };
}

export interface AlignOptions {
  align?: number;
  minBytes?: number;
}

/**
 * The model with the data of each initializer of at least `minBytes` at a file offset that is
 * a multiple of `align`. Idempotent; a model with nothing to align comes back as it was.
 */
export function alignWeights(
  model: Uint8Array,
  options: AlignOptions = {},
): { bytes: Uint8Array; aligned: number } {
  const align = options.align ?? WEIGHT_ALIGN;
  const minBytes = options.minBytes ?? MAPPED_MIN_BYTES;
  const src = memorySource(model);
  const top = fieldsOf(src, 0, model.length);
  const graph = graphOf(top);
  if (graph === undefined) return { bytes: model, aligned: 0 };
  const out = new Parts();
  let aligned = 0;
  for (const f of top) {
    if (f !== graph) {
      out.push(copyField(src, f));
      continue;
    }
    const graphTag = tag(FIELD.MODEL_GRAPH, WIRE.LEN);
    // The graph's length prefix comes before the data it positions: try a prefix size, and a
    // byte more while the length does not fit. A length that would fit one byte shorter is
    // written in the longer size anyway: with a shorter prefix the padding would grow it back
    // (lengths just under 2^21, 2^28).
    const entries = graphEntries(src, graph, minBytes);
    for (let lenSize = varintSize(graph.end - graph.body); ; lenSize++) {
      const laid = alignedGraph(src, entries, out.length + graphTag.length + lenSize, align);
      if (varintSize(laid.out.length) <= lenSize) {
        out.push(graphTag, varint(laid.out.length, lenSize), ...laid.out.chunks);
        aligned = laid.aligned;
        break;
      }
      if (lenSize === 5) throw new LayoutError('the graph is too large to lay out');
    }
  }
  return { bytes: out.concat(), aligned };
}

function entry(key: string, value: string): Uint8Array {
  const body = new Parts().push(
    ...Parts.field(FIELD.ENTRY_KEY, new Parts().push(Buffer.from(key))).chunks,
    ...Parts.field(FIELD.ENTRY_VALUE, new Parts().push(Buffer.from(value))).chunks,
  );
  return Parts.field(FIELD.TENSOR_EXTERNAL_DATA, body).concat();
}

export interface WeightlessModel {
  /** The model's protobuf with its mapped initializers as external data in the model file. */
  bytes: Uint8Array;
  /** Initializers that will be mapped, and their bytes. */
  tensors: number;
  mappedBytes: number;
}

/**
 * The model at `path` without the bytes of its initializers of at least `minBytes`: each names
 * its byte range in the model file as ONNX external data. Create the session from these bytes
 * with `session.model_external_initializers_file_folder_path` set to the model's directory.
 *
 * Only for a model laid out by `alignWeights`: undefined when it has no such initializer or one
 * of them is not aligned (a model built without the layout, whose weights would otherwise be
 * read into this copy and then parsed again). Throws LayoutError when the file is not a
 * protobuf this can walk: load the file itself then, and let onnxruntime say what is wrong.
 */
export function weightlessModel(path: string, options: AlignOptions = {}): WeightlessModel | undefined {
  const align = options.align ?? WEIGHT_ALIGN;
  const minBytes = options.minBytes ?? MAPPED_MIN_BYTES;
  const fd = openSync(path, 'r');
  try {
    const src = new FileSource(fd);
    const top = fieldsOf(src, 0, src.size);
    const graph = graphOf(top);
    if (graph === undefined) return undefined;
    // First the plan, from the fields' headers alone; bytes are read only if it maps.
    const entries = graphEntries(src, graph, minBytes);
    const large = entries.filter((e) => e.large !== undefined);
    if (large.length === 0 || large.some((e) => (e.large?.raw.body ?? 0) % align !== 0)) return undefined;
    const location = basename(path);
    const graphBody = new Parts();
    let mappedBytes = 0;
    for (const { field, large: tensor } of entries) {
      if (tensor === undefined) {
        graphBody.push(copyField(src, field));
        continue;
      }
      const { fields, raw } = tensor;
      const length = raw.end - raw.body;
      const body = keptFields(src, fields, raw).push(
        entry('location', location),
        entry('offset', String(raw.body)),
        entry('length', String(length)),
        tag(FIELD.TENSOR_DATA_LOCATION, WIRE.VARINT),
        varint(DATA_LOCATION_EXTERNAL),
      );
      graphBody.push(...Parts.field(FIELD.GRAPH_INITIALIZER, body).chunks);
      mappedBytes += length;
    }
    const out = new Parts();
    for (const f of top) {
      if (f === graph) out.push(...Parts.field(FIELD.MODEL_GRAPH, graphBody).chunks);
      else out.push(copyField(src, f));
    }
    return { bytes: out.concat(), tensors: large.length, mappedBytes };
  } finally {
    closeSync(fd);
  }
}
