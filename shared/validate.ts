import { type ErrorCode, OutpostError } from './errors.ts';
import { type AnySchema, describeIssue, type Infer, type SchemaError } from './schema.ts';

/** One line per problem, each naming the field: `pipeline.window.size: must be ≥ 1`. */
export function describeIssues(error: SchemaError, prefix = ''): string[] {
  return error.issues.map((issue) => describeIssue(issue, prefix));
}

/** Parses with a schema or throws an OutpostError whose message lists every bad field. */
export function parseOrThrow<S extends AnySchema>(
  schema: S,
  value: unknown,
  what: string,
  code: ErrorCode = 'BAD_REQUEST',
  prefix = '',
): Infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = describeIssues(result.error, prefix);
  throw new OutpostError(code, `${what}: ${problems.join('; ')}`, {
    cause: result.error,
    details: { problems },
  });
}
