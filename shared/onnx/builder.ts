/**
 * A deliberately small ONNX graph builder: enough to emit the example and test models without a
 * Python toolchain. It checks wiring (every node input must already exist) at build time because
 * onnxruntime's load errors for a dangling name are much harder to trace back to the source.
 */
import { AttributeType, onnxType, TensorDataType } from './onnx-schema.ts';

export const IR_VERSION = 8;
export const DEFAULT_OPSET = 17;
/** ai.onnx.ml opset that pairs with ai.onnx 17 in the ONNX release table. */
export const DEFAULT_ML_OPSET = 3;
export const ML_DOMAIN = 'ai.onnx.ml';
export const PRODUCER_NAME = 'outpost';

export type ElemType = 'float' | 'double' | 'int32' | 'int64' | 'string' | 'bool';
/** A fixed size, or a symbolic name such as 'batch' for a dimension chosen at run time. */
export type Dim = number | string;

export interface ValueSpec {
  name: string;
  type: ElemType;
  shape: Dim[];
}

const ELEM_TYPE_CODES: Record<ElemType, number> = {
  float: TensorDataType.FLOAT,
  double: TensorDataType.DOUBLE,
  int32: TensorDataType.INT32,
  int64: TensorDataType.INT64,
  string: TensorDataType.STRING,
  bool: TensorDataType.BOOL,
};

export type Attribute =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'ints'; value: number[] }
  | { kind: 'floats'; value: number[] }
  | { kind: 'string'; value: string }
  | { kind: 'strings'; value: string[] };

/**
 * Attribute constructors. ONNX distinguishes INT from FLOAT even for whole numbers (Gemm's
 * alpha=1 must be a float), so the kind is always spelled out rather than inferred.
 */
export const attr = {
  int: (value: number): Attribute => ({ kind: 'int', value: checkInt(value) }),
  float: (value: number): Attribute => ({ kind: 'float', value }),
  ints: (value: number[]): Attribute => ({ kind: 'ints', value: value.map(checkInt) }),
  floats: (value: number[]): Attribute => ({ kind: 'floats', value: [...value] }),
  string: (value: string): Attribute => ({ kind: 'string', value }),
  strings: (value: string[]): Attribute => ({ kind: 'strings', value: [...value] }),
};

function checkInt(value: number): number {
  if (!Number.isSafeInteger(value)) throw new Error(`attribute value ${value} is not a safe integer`);
  return value;
}

export interface NodeOptions {
  name?: string;
  domain?: string;
  attributes?: Record<string, Attribute>;
}

export interface BuilderOptions {
  opset?: number;
  mlOpset?: number;
  docString?: string;
  producerVersion?: string;
  modelVersion?: number;
}

interface NodeRecord {
  opType: string;
  inputs: string[];
  outputs: string[];
  name: string;
  domain: string;
  attributes: Record<string, Attribute>;
}

interface InitializerRecord {
  name: string;
  type: 'float' | 'int64';
  dims: number[];
  data: Float32Array | BigInt64Array;
}

const textEncoder = new TextEncoder();
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export class GraphBuilder {
  readonly #graphName: string;
  readonly #options: BuilderOptions;
  readonly #inputs: ValueSpec[] = [];
  readonly #outputs: ValueSpec[] = [];
  readonly #initializers: InitializerRecord[] = [];
  readonly #nodes: NodeRecord[] = [];
  readonly #metadata: [string, string][] = [];
  /** Every tensor name produced so far, so nodes can be validated as they are added. */
  readonly #defined = new Set<string>();

  constructor(graphName: string, options: BuilderOptions = {}) {
    this.#graphName = graphName;
    this.#options = options;
  }

  get inputs(): ValueSpec[] {
    return this.#inputs.map(copySpec);
  }

  get outputs(): ValueSpec[] {
    return this.#outputs.map(copySpec);
  }

  input(name: string, type: ElemType, shape: Dim[]): this {
    this.#define(name);
    this.#inputs.push({ name, type, shape: [...shape] });
    return this;
  }

  /** Outputs may be declared before or after the node that produces them. */
  output(name: string, type: ElemType, shape: Dim[]): this {
    if (this.#outputs.some((o) => o.name === name)) throw new Error(`duplicate output '${name}'`);
    this.#outputs.push({ name, type, shape: [...shape] });
    return this;
  }

  initializer(name: string, data: Float32Array | BigInt64Array, dims: number[]): this {
    const count = dims.reduce((a, b) => a * b, 1);
    if (count !== data.length) {
      throw new Error(`initializer '${name}': dims [${dims}] need ${count} values, got ${data.length}`);
    }
    this.#define(name);
    const type = data instanceof Float32Array ? 'float' : 'int64';
    this.#initializers.push({ name, type, dims: [...dims], data });
    return this;
  }

  node(opType: string, inputs: string[], outputs: string[], options: NodeOptions = {}): this {
    for (const input of inputs) {
      // An empty name is ONNX's way of skipping an optional input.
      if (input !== '' && !this.#defined.has(input)) {
        throw new Error(`${opType} node: input '${input}' is not defined yet`);
      }
    }
    for (const output of outputs) this.#define(output);
    this.#nodes.push({
      opType,
      inputs: [...inputs],
      outputs: [...outputs],
      name: options.name ?? `${opType.toLowerCase()}_${this.#nodes.length}`,
      domain: options.domain ?? '',
      attributes: { ...options.attributes },
    });
    return this;
  }

  metadata(key: string, value: string): this {
    this.#metadata.push([key, value]);
    return this;
  }

  /** Plain object in protobufjs field naming, useful for inspection and for `toBytes`. */
  toModelObject(): Record<string, unknown> {
    for (const output of this.#outputs) {
      if (!this.#defined.has(output.name)) throw new Error(`output '${output.name}' is never produced`);
    }
    const opsetImport = [{ domain: '', version: this.#options.opset ?? DEFAULT_OPSET }];
    if (this.#nodes.some((n) => n.domain === ML_DOMAIN)) {
      opsetImport.push({ domain: ML_DOMAIN, version: this.#options.mlOpset ?? DEFAULT_ML_OPSET });
    }
    return {
      irVersion: IR_VERSION,
      producerName: PRODUCER_NAME,
      producerVersion: this.#options.producerVersion ?? '0.1.0',
      modelVersion: this.#options.modelVersion ?? 1,
      ...(this.#options.docString ? { docString: this.#options.docString } : {}),
      opsetImport,
      metadataProps: this.#metadata.map(([key, value]) => ({ key, value })),
      graph: {
        name: this.#graphName,
        node: this.#nodes.map(nodeToObject),
        initializer: this.#initializers.map(initializerToObject),
        input: this.#inputs.map(valueInfoToObject),
        output: this.#outputs.map(valueInfoToObject),
      },
    };
  }

  toBytes(): Uint8Array {
    const modelType = onnxType('ModelProto');
    const message = modelType.fromObject(this.toModelObject());
    return modelType.encode(message).finish();
  }

  #define(name: string): void {
    if (name === '') throw new Error('tensor names must be non-empty');
    if (this.#defined.has(name)) throw new Error(`tensor '${name}' is defined twice`);
    this.#defined.add(name);
  }
}

function copySpec(spec: ValueSpec): ValueSpec {
  return { name: spec.name, type: spec.type, shape: [...spec.shape] };
}

function valueInfoToObject(spec: ValueSpec): Record<string, unknown> {
  return {
    name: spec.name,
    type: {
      tensorType: {
        elemType: ELEM_TYPE_CODES[spec.type],
        shape: {
          dim: spec.shape.map((d) => (typeof d === 'number' ? { dimValue: checkInt(d) } : { dimParam: d })),
        },
      },
    },
  };
}

function nodeToObject(node: NodeRecord): Record<string, unknown> {
  return {
    input: node.inputs,
    output: node.outputs,
    name: node.name,
    opType: node.opType,
    ...(node.domain ? { domain: node.domain } : {}),
    attribute: Object.entries(node.attributes).map(([name, a]) => attributeToObject(name, a)),
  };
}

function attributeToObject(name: string, a: Attribute): Record<string, unknown> {
  switch (a.kind) {
    case 'int':
      return { name, type: AttributeType.INT, i: a.value };
    case 'float':
      return { name, type: AttributeType.FLOAT, f: a.value };
    case 'ints':
      return { name, type: AttributeType.INTS, ints: a.value };
    case 'floats':
      return { name, type: AttributeType.FLOATS, floats: a.value };
    case 'string':
      return { name, type: AttributeType.STRING, s: textEncoder.encode(a.value) };
    case 'strings':
      return { name, type: AttributeType.STRINGS, strings: a.value.map((s) => textEncoder.encode(s)) };
  }
}

function initializerToObject(init: InitializerRecord): Record<string, unknown> {
  return {
    name: init.name,
    dims: init.dims,
    dataType: ELEM_TYPE_CODES[init.type],
    rawData: littleEndianBytes(init.data),
  };
}

/** ONNX raw_data is little-endian regardless of the machine that wrote it. */
function littleEndianBytes(data: Float32Array | BigInt64Array): Uint8Array {
  if (LITTLE_ENDIAN_HOST) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.byteLength);
  const view = new DataView(out.buffer);
  if (data instanceof Float32Array) {
    data.forEach((v, i) => {
      view.setFloat32(i * 4, v, true);
    });
  } else {
    data.forEach((v, i) => {
      view.setBigInt64(i * 8, v, true);
    });
  }
  return out;
}
