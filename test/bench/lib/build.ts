import { mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/**
 * Inside the repository so that the built files resolve node_modules as the sources do; one
 * directory per run so that two runs (a developer's and the test suite's) do not collide.
 */
export const BUILD_ROOT = fileURLToPath(new URL('../.build/', import.meta.url));

/** What the processes under test are built from: the agent, what it imports, and the bench's own fixtures. */
const SOURCES = ['agent', 'shared', 'test/bench/fixtures', 'test/bench/lib'];

async function tsFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter(
      (e) =>
        e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts'),
    )
    .map((e) => join(e.parentPath, e.name));
}

/**
 * The processes under test run compiled JavaScript, as the installed service does: under tsx
 * every worker thread would load and run the TypeScript loader too, which costs memory and
 * start time a user never pays. Each file is transpiled on its own (the project compiles with
 * isolatedModules, so that is exact); type checking is `npm run typecheck`'s job, and skipping
 * it here keeps `npm run bench -- --quick` fast enough for the test suite.
 */
export async function buildForBench(): Promise<string> {
  await removeStaleBuilds();
  const buildDir = join(BUILD_ROOT, `run-${process.pid}`);
  await rm(buildDir, { recursive: true, force: true });
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2023,
    module: ts.ModuleKind.ESNext,
    rewriteRelativeImportExtensions: true,
    verbatimModuleSyntax: true,
    // As deploy/tsconfig.package.json builds what devices install.
    sourceMap: false,
    removeComments: true,
  };
  for (const source of SOURCES) {
    for (const file of await tsFiles(join(ROOT, source))) {
      const out = join(buildDir, relative(ROOT, file)).replace(/\.ts$/, '.js');
      const { outputText, diagnostics } = ts.transpileModule(await readFile(file, 'utf8'), {
        compilerOptions: options,
        fileName: file,
        reportDiagnostics: true,
      });
      if (diagnostics !== undefined && diagnostics.length > 0) {
        const text = ts.flattenDiagnosticMessageText(diagnostics[0]?.messageText ?? '', '\n');
        throw new Error(`building the bench: ${relative(ROOT, file)}: ${text}`);
      }
      await mkdir(dirname(out), { recursive: true });
      await writeFile(out, outputText);
    }
  }
  return buildDir;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A run that crashed left its build behind; its process is gone, so its directory can go. */
async function removeStaleBuilds(): Promise<void> {
  const entries = await readdir(BUILD_ROOT).catch(() => [] as string[]);
  for (const name of entries) {
    const pid = /^run-(\d+)$/.exec(name)?.[1];
    if (pid !== undefined && !alive(Number(pid)))
      await rm(join(BUILD_ROOT, name), { recursive: true, force: true });
  }
}

export async function removeBuild(buildDir: string): Promise<void> {
  await rm(buildDir, { recursive: true, force: true });
  // The parent goes too once no other run is using it.
  await rmdir(BUILD_ROOT).catch(() => {});
}
