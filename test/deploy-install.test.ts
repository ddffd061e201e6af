import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import { arch } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { DoctorReport } from '../agent/doctor.ts';
import { ROOT } from './fixtures/agent-process.ts';
import { tempDir } from './helpers/tmp.ts';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * What is simulated, and why: the test must not add a user to the machine it runs on, so
 * `useradd`/`userdel` on PATH are small scripts that edit <root>/etc/passwd and /etc/group the
 * way `useradd --root` would, and log their arguments; `uname` is faked only in the test of the
 * architecture refusal. The control plane's enrolment route is a local HTTP endpoint speaking
 * the enrolment contract (POST {token, deviceId, arch, agentVersion} → {deviceId, credential}).
 * Everything else is real: the package built by `npm run package`, the shell scripts, the
 * installed agent running its doctor.
 */
function fakeBin(): string {
  const bin = tempDir('fakebin');
  writeFileSync(
    join(bin, 'useradd'),
    `#!/bin/sh
root=/
for a in "$@"; do [ "$prev" = --root ] && root=$a; prev=$a; done
name=$prev
echo "useradd $*" >> "$root/useradd.log"
echo "$name:x:999:999:Outpost agent:/var/lib/outpost:/usr/sbin/nologin" >> "$root/etc/passwd"
echo "$name:x:999:" >> "$root/etc/group"
`,
  );
  writeFileSync(
    join(bin, 'userdel'),
    `#!/bin/sh
root=/
for a in "$@"; do [ "$prev" = --root ] && root=$a; prev=$a; done
echo "userdel $*" >> "$root/useradd.log"
grep -v "^$prev:" "$root/etc/passwd" > "$root/etc/passwd.new"; mv "$root/etc/passwd.new" "$root/etc/passwd"
grep -v "^$prev:" "$root/etc/group" > "$root/etc/group.new"; mv "$root/etc/group.new" "$root/etc/group"
`,
  );
  for (const f of ['useradd', 'userdel']) chmodSync(join(bin, f), 0o755);
  return bin;
}

function fakeRoot(): string {
  const root = tempDir('root');
  mkdirSync(join(root, 'etc'));
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
  return root;
}

const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

describe('install.sh and uninstall.sh into a throwaway root', () => {
  let pkg: string;
  let bin: string;
  let server: Server;
  let cpUrl: string;
  const enrolments: Array<Record<string, unknown>> = [];
  const rootJson = join(tempDir('trust'), 'root.json');
  const otherRootJson = join(dirname(rootJson), 'other-root.json');

  before(async () => {
    const out = tempDir('package');
    // --no-check: `npm test` type-checks the same sources before the suite runs.
    const built = await run('sh', ['deploy/package.sh', '--out', out, '--no-check']);
    assert.equal(built.code, 0, built.stderr);
    pkg = built.stdout.trim().split('\n').at(-1) as string;
    assert.match(pkg, new RegExp(`outpost-agent-\\d+\\.\\d+\\.\\d+-linux-${arch()}\\.tar\\.gz$`));
    bin = fakeBin();
    writeFileSync(rootJson, JSON.stringify({ signed: { _type: 'root', version: 1 }, signatures: [] }));
    writeFileSync(otherRootJson, JSON.stringify({ signed: { _type: 'root', version: 2 }, signatures: [] }));
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => {
        const parsed = JSON.parse(body) as Record<string, unknown>;
        enrolments.push({ url: req.url, ...parsed });
        if (req.method !== 'POST' || req.url !== '/v1/devices/enrol' || parsed.token !== 'oet_good') {
          res
            .writeHead(401, { 'content-type': 'application/json' })
            .end('{"error":"enrolment token unknown"}');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ deviceId: parsed.deviceId, credential: 'odc_secret_credential' }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cpUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(() => {
    server?.close();
  });

  const install = (root: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
    run('sh', ['deploy/install.sh', '--root', root, '--package', pkg, '--node', process.execPath, ...args], {
      PATH: `${bin}:${process.env.PATH}`,
      ...env,
    });

  test('refuses clearly: unsupported machine, no pinned root, enrolment without token or control plane', async () => {
    const root = fakeRoot();
    const unameBin = tempDir('uname');
    writeFileSync(join(unameBin, 'uname'), '#!/bin/sh\n[ "$1" = -m ] && echo armv7l || /bin/uname "$@"\n');
    chmodSync(join(unameBin, 'uname'), 0o755);
    const arm32 = await install(root, ['--root-json', rootJson, '--no-enrol'], {
      PATH: `${unameBin}:${bin}:${process.env.PATH}`,
    });
    assert.equal(arm32.code, 1);
    assert.match(arm32.stderr, /unsupported machine armv7l: Outpost runs on x86-64 and arm64/);
    const noRoot = await install(root, ['--no-enrol']);
    assert.match(noRoot.stderr, /no pinned TUF root: pass --root-json FILE/);
    const noToken = await install(root, ['--root-json', rootJson, '--control-plane', cpUrl]);
    assert.match(noToken.stderr, /enrolment needs --token/);
    const down = await install(root, [
      '--root-json',
      rootJson,
      '--control-plane',
      'http://127.0.0.1:9',
      '--token',
      'oet_good',
    ]);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot reach http:\/\/127\.0\.0\.1:9\/v1\/devices\/enrol: .*pass --no-enrol/);
    const refused = await install(root, [
      '--root-json',
      rootJson,
      '--control-plane',
      cpUrl,
      '--token',
      'oet_bad',
    ]);
    assert.match(refused.stderr, /enrolment refused: HTTP 401/);
    assert.ok(!existsSync(join(root, 'etc/outpost/device.json')));
    assert.deepEqual(readdirSync(root), ['etc'], 'nothing was installed');
    assert.deepEqual(readdirSync(join(root, 'etc')).sort(), ['group', 'passwd']);
  });

  test('installs, enrols, runs, is idempotent, and uninstalls keeping data unless --purge', async () => {
    const root = fakeRoot();
    const first = await install(root, [
      '--root-json',
      rootJson,
      '--control-plane',
      cpUrl,
      '--token',
      'oet_good',
      '--device-id',
      'press-7',
    ]);
    assert.equal(first.code, 0, first.stderr + first.stdout);

    // Layout, owners and modes.
    assert.equal(readlinkSync(join(root, 'opt/outpost/current')), 'releases/0.1.0');
    assert.ok(existsSync(join(root, 'opt/outpost/current/dist/agent/cli.js')));
    assert.equal(readFileSync(join(root, 'etc/outpost/root.json'), 'utf8'), readFileSync(rootJson, 'utf8'));
    assert.equal(mode(join(root, 'etc/outpost/root.json')), '644');
    assert.equal(mode(join(root, 'etc/outpost')), '750');
    const data = statSync(join(root, 'var/lib/outpost'));
    assert.equal((data.mode & 0o777).toString(8), '750');
    assert.equal(data.uid, 999, 'owned by the outpost user created in the root');
    const config = JSON.parse(readFileSync(join(root, 'etc/outpost/agent.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    assert.equal(config.deviceId, 'press-7');
    assert.deepEqual(config.controlPlane, { url: cpUrl });
    assert.equal(mode(join(root, 'etc/outpost/agent.json')), '640');
    const device = JSON.parse(readFileSync(join(root, 'etc/outpost/device.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    assert.equal(device.credential, 'odc_secret_credential');
    assert.equal(mode(join(root, 'etc/outpost/device.json')), '640');
    assert.deepEqual(enrolments.at(-1), {
      url: '/v1/devices/enrol',
      token: 'oet_good',
      deviceId: 'press-7',
      arch: arch(),
      agentVersion: '0.1.0',
    });
    const unit = readFileSync(join(root, 'etc/systemd/system/outpost-agent.service'), 'utf8');
    assert.match(
      unit,
      new RegExp(`^ExecStart=${process.execPath} /opt/outpost/current/dist/agent/cli.js run`, 'm'),
    );
    assert.match(
      readFileSync(join(root, 'useradd.log'), 'utf8'),
      new RegExp(`^useradd --root ${root} --system`),
    );

    // The installed package runs on its own: its doctor loads onnxruntime from the package.
    const cfg = join(root, 'doctor.json');
    writeFileSync(
      cfg,
      JSON.stringify({ dataDir: join(root, 'var/lib/outpost'), uplink: { enabled: false } }),
    );
    const doctor = await run(process.execPath, [
      join(root, 'opt/outpost/current/dist/agent/cli.js'),
      'doctor',
      '--config',
      cfg,
      '--json',
    ]);
    const report = JSON.parse(doctor.stdout) as DoctorReport;
    assert.equal(
      report.checks.find((c) => c.name === 'onnxruntime')?.state,
      'pass',
      doctor.stdout + doctor.stderr,
    );
    // The wrapper names the real /opt path (it is for the device, not for the test root).
    const wrapper = readFileSync(join(root, 'usr/local/bin/outpost-agent'), 'utf8');
    assert.ok(
      wrapper.includes(`exec ${process.execPath} /opt/outpost/current/dist/agent/cli.js "$@"`),
      wrapper,
    );
    assert.equal(mode(join(root, 'usr/local/bin/outpost-agent')), '755');

    // Idempotent: an operator's edits, the enrolment and the user survive a second run.
    writeFileSync(
      join(root, 'etc/outpost/agent.json'),
      JSON.stringify({ ...config, log: { level: 'debug' } }),
    );
    writeFileSync(join(root, 'var/lib/outpost/outbox.db'), 'precious');
    const calls = enrolments.length;
    const second = await install(root, ['--root-json', rootJson]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /already enrolled/);
    assert.equal(enrolments.length, calls, 'no second enrolment');
    assert.match(readFileSync(join(root, 'etc/outpost/agent.json'), 'utf8'), /"debug"/);
    assert.equal(readFileSync(join(root, 'useradd.log'), 'utf8').split('\n').filter(Boolean).length, 1);
    assert.deepEqual(readdirSync(join(root, 'opt/outpost/releases')), ['0.1.0']);
    const swap = await install(root, ['--root-json', otherRootJson]);
    assert.equal(swap.code, 1);
    assert.match(swap.stderr, /root\.json exists and differs .* --replace-root/);

    // Uninstall keeps data and config; --purge removes them and the user.
    const un = await run('sh', ['deploy/uninstall.sh', '--root', root], {
      PATH: `${bin}:${process.env.PATH}`,
    });
    assert.equal(un.code, 0, un.stderr);
    assert.ok(!existsSync(join(root, 'opt/outpost')));
    assert.ok(!existsSync(join(root, 'etc/systemd/system/outpost-agent.service')));
    assert.ok(!existsSync(join(root, 'usr/local/bin/outpost-agent')));
    assert.equal(readFileSync(join(root, 'var/lib/outpost/outbox.db'), 'utf8'), 'precious');
    assert.ok(existsSync(join(root, 'etc/outpost/device.json')));
    const purge = await run('sh', ['deploy/uninstall.sh', '--root', root, '--purge'], {
      PATH: `${bin}:${process.env.PATH}`,
    });
    assert.equal(purge.code, 0, purge.stderr);
    assert.ok(!existsSync(join(root, 'var/lib/outpost')));
    assert.ok(!existsSync(join(root, 'etc/outpost')));
    assert.doesNotMatch(readFileSync(join(root, 'etc/passwd'), 'utf8'), /^outpost:/m);
  });
});
