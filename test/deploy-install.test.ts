import assert from 'node:assert/strict';
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
import { arch } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { DoctorReport } from '../agent/doctor.ts';
import { runCommand } from '../agent/run-command.ts';
import { readCredential } from '../agent/sync/credentials.ts';
import { ROOT } from './fixtures/agent-process.ts';
import { startControlPlane, type TestControlPlane } from './helpers/cloud.ts';
import { tempDir } from './helpers/tmp.ts';

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  return runCommand(command, args, { cwd: ROOT, env });
}

/**
 * What is simulated, and why: the test must not add a user to the machine it runs on, so
 * `useradd`/`userdel` on PATH are small scripts that edit <root>/etc/passwd and /etc/group the
 * way `useradd --root` would, and log their arguments; `uname` is faked only in the test of the
 * architecture refusal. Everything else is real: the package built by `npm run package`, the
 * shell scripts, the control plane (enrolment tokens from its admin API, enrolment at
 * POST /v1/enrol), the installed agent running its doctor on the installed config.
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

interface DeviceListing {
  id: string;
  arch: string | null;
  agentVersion: string | null;
  tags: Record<string, string>;
}

describe('install.sh and uninstall.sh into a throwaway root', () => {
  let pkg: string;
  let bin: string;
  let t: TestControlPlane;
  let cpUrl: string;
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
    t = await startControlPlane();
    cpUrl = t.cp.url.replace(/\/$/, '');
  });
  after(async () => {
    await t?.stop();
  });

  const newToken = async (tags: Record<string, string> = {}) =>
    (await t.client.post<{ token: string }>('/v1/admin/enrolment-tokens', { tags })).token;
  const devices = () => t.client.get<DeviceListing[]>('/v1/admin/devices');
  const install = (root: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
    run('sh', ['deploy/install.sh', '--root', root, '--package', pkg, '--node', process.execPath, ...args], {
      PATH: `${bin}:${process.env.PATH}`,
      ...env,
    });
  const readConfig = (root: string) =>
    JSON.parse(readFileSync(join(root, 'etc/outpost/agent.json'), 'utf8')) as Record<string, unknown>;
  const credentialFile = (root: string) => join(root, 'var/lib/outpost/sync/credential.json');

  test('refuses clearly: unsupported machine, no pinned root, enrolment without token, unreachable or refusing control plane', async () => {
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
      await newToken(),
    ]);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot reach http:\/\/127\.0\.0\.1:9\/v1\/enrol: .*pass --no-enrol/);
    const refused = await install(root, [
      '--root-json',
      rootJson,
      '--control-plane',
      cpUrl,
      '--token',
      'oet_not_a_token',
    ]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /enrolment refused: HTTP 401 .*enrolment token unknown, expired or already used/,
    );
    assert.deepEqual(await devices(), [], 'the control plane enrolled nothing');
    assert.deepEqual(readdirSync(root), ['etc'], 'nothing was installed');
    assert.deepEqual(readdirSync(join(root, 'etc')).sort(), ['group', 'passwd']);
  });

  test('installs, enrols with the control plane, runs, is idempotent, and uninstalls keeping data unless --purge', async () => {
    const root = fakeRoot();
    const token = await newToken({ site: 'plant-3' });
    const first = await install(root, [
      '--root-json',
      rootJson,
      '--control-plane',
      cpUrl,
      '--token',
      token,
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
    const config = readConfig(root);
    assert.equal(config.deviceId, 'press-7');
    assert.deepEqual(config.controlPlane, { url: cpUrl });
    assert.deepEqual(config.sync, { enabled: true, url: cpUrl });
    assert.deepEqual(config.updates, { enabled: true, pinnedRoot: '/etc/outpost/root.json' });
    assert.equal(mode(join(root, 'etc/outpost/agent.json')), '640');

    // The credential is where and how the agent's sync client reads it.
    const credPath = credentialFile(root);
    assert.equal(mode(credPath), '600');
    assert.equal(statSync(credPath).uid, 999);
    assert.equal(mode(dirname(credPath)), '700');
    assert.equal(statSync(dirname(credPath)).uid, 999);
    const cred = readCredential(credPath);
    assert.ok(cred, 'the agent reads the credential');
    assert.equal(cred.deviceId, 'press-7');
    assert.equal(cred.url, cpUrl);
    assert.match(cred.credential, /^odc_/);
    assert.deepEqual(Object.keys(JSON.parse(readFileSync(credPath, 'utf8'))).sort(), [
      'credential',
      'deviceId',
      'url',
    ]);

    // The control plane knows the device, accepts the credential, and the token is spent.
    assert.deepEqual(
      (await devices()).map((d) => ({ id: d.id, arch: d.arch, agentVersion: d.agentVersion, tags: d.tags })),
      [{ id: 'press-7', arch: arch(), agentVersion: '0.1.0', tags: { site: 'plant-3' } }],
    );
    const beat = await fetch(`${cpUrl}/v1/devices/press-7/heartbeat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${cred.credential}` },
    });
    assert.equal(beat.status, 204);
    const again = await install(fakeRoot(), [
      '--root-json',
      rootJson,
      '--control-plane',
      cpUrl,
      '--token',
      token,
      '--device-id',
      'press-8',
    ]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /enrolment refused: HTTP 401 .*already used/);
    assert.deepEqual(
      (await devices()).map((d) => d.id),
      ['press-7'],
    );

    const unit = readFileSync(join(root, 'etc/systemd/system/outpost-agent.service'), 'utf8');
    assert.match(
      unit,
      new RegExp(
        `^ExecStart=${process.execPath} --max-semi-space-size=2 /opt/outpost/current/dist/agent/cli.js run`,
        'm',
      ),
    );
    assert.match(
      readFileSync(join(root, 'useradd.log'), 'utf8'),
      new RegExp(`^useradd --root ${root} --system`),
    );

    // The installed package runs on its own against the installed config (its absolute paths
    // moved into the test root by environment overrides): the config validates, onnxruntime
    // loads from the package, and the control plane answers.
    const doctor = await run(
      process.execPath,
      [
        join(root, 'opt/outpost/current/dist/agent/cli.js'),
        'doctor',
        '--config',
        join(root, 'etc/outpost/agent.json'),
        '--json',
      ],
      {
        OUTPOST_DATA_DIR: join(root, 'var/lib/outpost'),
        OUTPOST_UPDATES__PINNED_ROOT: join(root, 'etc/outpost/root.json'),
        OUTPOST_UPLINK__ENABLED: 'false',
      },
    );
    const report = JSON.parse(doctor.stdout) as DoctorReport;
    const state = (name: string) => report.checks.find((c) => c.name === name)?.state;
    assert.equal(state('config'), 'pass', doctor.stdout + doctor.stderr);
    assert.equal(state('onnxruntime'), 'pass', doctor.stdout + doctor.stderr);
    assert.equal(state('control-plane'), 'pass', doctor.stdout + doctor.stderr);
    // The wrapper names the real /opt path (it is for the device, not for the test root).
    const wrapper = readFileSync(join(root, 'usr/local/bin/outpost-agent'), 'utf8');
    assert.ok(
      wrapper.includes(`exec ${process.execPath} /opt/outpost/current/dist/agent/cli.js "$@"`),
      wrapper,
    );
    assert.equal(mode(join(root, 'usr/local/bin/outpost-agent')), '755');

    // Idempotent: an operator's edits, the enrolment and the user survive a second run that
    // has no token: the credential file is the enrolment.
    writeFileSync(
      join(root, 'etc/outpost/agent.json'),
      JSON.stringify({ ...config, log: { level: 'debug' } }),
    );
    writeFileSync(join(root, 'var/lib/outpost/outbox.db'), 'precious');
    const credText = readFileSync(credPath, 'utf8');
    const second = await install(root, ['--root-json', rootJson, '--control-plane', cpUrl]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /already enrolled as press-7/);
    assert.equal(readFileSync(credPath, 'utf8'), credText);
    assert.equal((await devices()).length, 1, 'no second enrolment');
    assert.match(readFileSync(join(root, 'etc/outpost/agent.json'), 'utf8'), /"debug"/);
    assert.equal(readFileSync(join(root, 'useradd.log'), 'utf8').split('\n').filter(Boolean).length, 1);
    assert.deepEqual(readdirSync(join(root, 'opt/outpost/releases')), ['0.1.0']);
    const otherId = await install(root, ['--root-json', rootJson, '--device-id', 'press-9']);
    assert.equal(otherId.code, 1);
    assert.match(otherId.stderr, /already enrolled as press-7 .*--device-id press-9 would not match/);
    const swap = await install(root, ['--root-json', otherRootJson]);
    assert.equal(swap.code, 1);
    assert.match(swap.stderr, /root\.json exists and differs .* --replace-root/);

    // Uninstall keeps data, config and the credential; --purge removes them and the user.
    const un = await run('sh', ['deploy/uninstall.sh', '--root', root], {
      PATH: `${bin}:${process.env.PATH}`,
    });
    assert.equal(un.code, 0, un.stderr);
    assert.ok(!existsSync(join(root, 'opt/outpost')));
    assert.ok(!existsSync(join(root, 'etc/systemd/system/outpost-agent.service')));
    assert.ok(!existsSync(join(root, 'usr/local/bin/outpost-agent')));
    assert.equal(readFileSync(join(root, 'var/lib/outpost/outbox.db'), 'utf8'), 'precious');
    assert.equal(readFileSync(credPath, 'utf8'), credText);
    assert.ok(existsSync(join(root, 'etc/outpost/agent.json')));
    const purge = await run('sh', ['deploy/uninstall.sh', '--root', root, '--purge'], {
      PATH: `${bin}:${process.env.PATH}`,
    });
    assert.equal(purge.code, 0, purge.stderr);
    assert.ok(!existsSync(credPath));
    assert.ok(!existsSync(join(root, 'var/lib/outpost')));
    assert.ok(!existsSync(join(root, 'etc/outpost')));
    assert.doesNotMatch(readFileSync(join(root, 'etc/passwd'), 'utf8'), /^outpost:/m);
  });

  test('--no-enrol: a given token goes into the config for the first start; without one sync stays off until a later run enrols', async () => {
    const deferred = fakeRoot();
    const token = await newToken();
    const withToken = await install(deferred, [
      '--root-json',
      rootJson,
      '--control-plane',
      cpUrl,
      '--token',
      token,
      '--device-id',
      'lathe-1',
      '--no-enrol',
    ]);
    assert.equal(withToken.code, 0, withToken.stderr + withToken.stdout);
    assert.match(withToken.stdout, /the agent enrols with sync\.enrolmentToken on its first start/);
    assert.deepEqual(readConfig(deferred).sync, { enabled: true, url: cpUrl, enrolmentToken: token });
    assert.deepEqual(readConfig(deferred).updates, { enabled: true, pinnedRoot: '/etc/outpost/root.json' });
    assert.ok(!existsSync(credentialFile(deferred)));
    assert.deepEqual(
      (await devices()).filter((d) => d.id === 'lathe-1'),
      [],
      'the token is not spent by the installer',
    );

    const later = fakeRoot();
    const noToken = await install(later, [
      '--root-json',
      rootJson,
      '--control-plane',
      cpUrl,
      '--device-id',
      'lathe-2',
      '--no-enrol',
    ]);
    assert.equal(noToken.code, 0, noToken.stderr + noToken.stdout);
    assert.match(
      noToken.stdout,
      /sync stays off; enrol later by running this again with --control-plane URL --token TOKEN/,
    );
    const off = readConfig(later);
    assert.equal(off.sync, undefined);
    assert.equal(off.updates, undefined);
    assert.deepEqual(off.controlPlane, { url: cpUrl });
    assert.ok(!existsSync(credentialFile(later)));

    // Running it again with a token enrols and adds sync and updates to the kept config.
    const enrolNow = await install(later, [
      '--root-json',
      rootJson,
      '--control-plane',
      cpUrl,
      '--token',
      token,
    ]);
    assert.equal(enrolNow.code, 0, enrolNow.stderr + enrolNow.stdout);
    assert.match(enrolNow.stdout, /added the control plane \(sync, updates\)/);
    assert.deepEqual(readConfig(later).sync, { enabled: true, url: cpUrl });
    assert.deepEqual(readConfig(later).updates, { enabled: true, pinnedRoot: '/etc/outpost/root.json' });
    assert.equal(readCredential(credentialFile(later))?.deviceId, 'lathe-2');
    assert.ok((await devices()).some((d) => d.id === 'lathe-2'));
  });
});
