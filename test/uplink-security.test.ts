import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import type { AgentConfigInput } from '../agent/config.ts';
import type { Agent } from '../agent/main.ts';
import type { Envelope } from '../shared/envelope.ts';
import { topics } from '../shared/topics.ts';
import { linearPipelineBundle, readingOf } from './fixtures/pipeline-bundles.ts';
import { testAgent, waitFor } from './helpers/agent.ts';
import { freePort, mosquittoPath, startBroker } from './helpers/broker.ts';
import { tempDir } from './helpers/tmp.ts';

const deployDir = new URL('../deploy/mosquitto/', import.meta.url).pathname;
const ACL = join(deployDir, 'outpost.acl');

/** A password file with these users; readable by mosquitto after it drops root. */
function passwordFile(users: Record<string, string>): string {
  const dir = tempDir('mosquitto-auth');
  chmodSync(dir, 0o755);
  const file = join(dir, 'passwd');
  let first = true;
  for (const [user, password] of Object.entries(users)) {
    execFileSync('mosquitto_passwd', [...(first ? ['-c'] : []), '-b', file, user, password]);
    first = false;
  }
  chmodSync(file, 0o644);
  return file;
}

async function pushAgent(device: string, uplink: AgentConfigInput['uplink']): Promise<Agent> {
  const bundle = await linearPipelineBundle(tempDir('bundles'), {
    kind: 'http',
    name: 'feed',
    payload: { format: 'json', field: 'x' },
  });
  const agent = testAgent({
    deviceId: device,
    uplink: { backoffMinMs: 100, backoffMaxMs: 500, ...uplink },
    sensors: { mqtt: 'off' },
    telemetry: { enabled: false },
    models: { bundles: [bundle.dir] },
  });
  await agent.start();
  return agent;
}

async function push(agent: Agent, n: number): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${agent.httpPort}/v1/sensors/feed`, {
    method: 'POST',
    body: JSON.stringify({ x: [n, 0, 0] }),
  });
  assert.equal(res.status, 200);
}

function listen(client: MqttClient): Array<{ topic: string; payload: string }> {
  const got: Array<{ topic: string; payload: string }> = [];
  client.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
  return got;
}

test('the shipped per-device ACL: a device publishes under its own topics only; passwords are required', async () => {
  const passwd = passwordFile({ 'outpost-cloud': 'cloud-pw', 'dev-a': 'a-pw', 'dev-b': 'b-pw' });
  const broker = await startBroker({
    kind: 'mosquitto',
    extraConfig: `password_file ${passwd}\nacl_file ${ACL}`,
  });
  const cloud = await mqtt.connectAsync(broker.url, {
    protocolVersion: 5,
    username: 'outpost-cloud',
    password: 'cloud-pw',
  });
  await cloud.subscribeAsync('outpost/v1/#', { qos: 1 });
  const seen = listen(cloud);
  const agent = await pushAgent('dev-a', { url: broker.url, username: 'dev-a', password: 'a-pw' });
  const clients: MqttClient[] = [cloud];
  try {
    await waitFor(() => agent.uplink?.state === 'connected', 'dev-a to connect with its password');
    await push(agent, 1);
    await waitFor(
      () => seen.some((m) => m.topic === topics.pred('dev-a', 'linear-regression')),
      'dev-a prediction',
    );
    const pred = seen.find((m) => m.topic === topics.pred('dev-a', 'linear-regression'));
    assert.equal(readingOf((JSON.parse(pred?.payload ?? '{}') as Envelope<{ values: number[] }>).body), 1);
    assert.ok(
      seen.some((m) => m.topic === topics.status('dev-a')),
      'its birth message passes the ACL',
    );

    // dev-a, as a raw MQTT client, tries to write dev-b's topics and to forge its own commands.
    const v5 = await mqtt.connectAsync(broker.url, {
      protocolVersion: 5,
      clientId: 'dev-a-raw5',
      username: 'dev-a',
      password: 'a-pw',
    });
    const v4 = await mqtt.connectAsync(broker.url, {
      protocolVersion: 4,
      clientId: 'dev-a-raw4',
      username: 'dev-a',
      password: 'a-pw',
    });
    clients.push(v5, v4);
    await assert.rejects(
      v5.publishAsync(topics.pred('dev-b', 'linear-regression'), 'forged', { qos: 1 }),
      (err: { code?: number }) => err.code === 0x87,
      'MQTT 5: the broker answers not authorized',
    );
    // MQTT 3.1.1 has no negative PUBACK: the broker drops it silently. A legit message sent right
    // after it on the same connection arrives, so had the forged one passed it would be there too.
    await v4.publishAsync(topics.pred('dev-b', 'linear-regression'), 'forged', { qos: 1 });
    await v4.publishAsync(topics.cmd('dev-a', 'sync'), 'forged', { qos: 1 });
    await v4.publishAsync(topics.evt('dev-a', 'marker'), 'legit', { qos: 1 });
    await waitFor(() => seen.some((m) => m.topic === topics.evt('dev-a', 'marker')), 'the legit marker');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(
      seen.filter((m) => m.payload === 'forged'),
      [],
      'nothing dev-a forged under dev-b or as a command reached the cloud',
    );
    // Nor may it read dev-b's commands (mosquitto grants the subscription but delivers nothing).
    const snooped = listen(v4);
    await v4.subscribeAsync(topics.cmdFilter('dev-b'), { qos: 1 });
    await v4.subscribeAsync(topics.cmdFilter('dev-a'), { qos: 1 });
    await cloud.publishAsync(topics.cmd('dev-b', 'sync'), 'for-b', { qos: 1 });
    await cloud.publishAsync(topics.cmd('dev-a', 'marker'), 'for-a', { qos: 1 });
    await waitFor(() => snooped.some((m) => m.payload === 'for-a'), 'dev-a to read its own command');
    assert.deepEqual(
      snooped.filter((m) => m.payload === 'for-b'),
      [],
    );

    // dev-b's own credentials do work for dev-b.
    const b = await mqtt.connectAsync(broker.url, {
      protocolVersion: 4,
      username: 'dev-b',
      password: 'b-pw',
    });
    clients.push(b);
    await b.publishAsync(topics.pred('dev-b', 'linear-regression'), 'from-b', { qos: 1 });
    await waitFor(() => seen.some((m) => m.payload === 'from-b'), 'dev-b on its own topic');

    // The agent's own uplink: a command reply to a response topic outside its tree is refused by
    // the broker (0x87), counted, and does not stay in the outbox for ever.
    await cloud.publishAsync(topics.cmd('dev-a', 'status'), '{"id":"r1"}', {
      qos: 1,
      properties: { responseTopic: 'outpost/v1/dev-b/evt/reply/x', correlationData: Buffer.from('x') },
    });
    await waitFor(() => agent.outbox.stats().refused === 1, 'the refused reply to be counted');
    await waitFor(() => agent.outbox.stats().rows === 0, 'the outbox to be clear');
  } finally {
    await agent.stop();
    for (const c of clients) await c.endAsync(true);
  }

  // A wrong password never gets in.
  const wrong = await pushAgent('dev-a', {
    url: broker.url,
    username: 'dev-a',
    password: 'nope',
    protocol: '5',
  });
  try {
    await waitFor(() => wrong.uplink?.lastError !== undefined, 'the refusal');
    await new Promise((r) => setTimeout(r, 300));
    assert.notEqual(wrong.uplink?.state, 'connected');
    assert.equal(wrong.uplink?.counters.connects, 0);
    assert.match(wrong.uplink?.lastError ?? '', /not authorized|bad user name or password/i);
  } finally {
    await wrong.stop();
    await broker.stop();
  }
});

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate whose CN is the device id. */
function makeCerts(device: string): string {
  const dir = tempDir('certs');
  chmodSync(dir, 0o755);
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=outpost-test-ca',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
    ],
    dir,
  );
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(
    [
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      '/CN=127.0.0.1',
      '-keyout',
      'server.key',
      '-out',
      'server.csr',
    ],
    dir,
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      'server.ext',
      '-out',
      'server.crt',
    ],
    dir,
  );
  openssl(
    [
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      `/CN=${device}`,
      '-keyout',
      'client.key',
      '-out',
      'client.csr',
    ],
    dir,
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'client.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-out',
      'client.crt',
    ],
    dir,
  );
  for (const f of ['ca.crt', 'server.crt', 'server.key']) chmodSync(join(dir, f), 0o644);
  return dir;
}

async function waitPort(port: number): Promise<void> {
  await waitFor(
    () =>
      new Promise<boolean>((resolve) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      }),
    `port ${port}`,
  );
}

test('mutual TLS with the shipped mosquitto.conf: the device id comes from the client certificate', {
  skip: mosquittoPath() === undefined,
}, async () => {
  const certs = makeCerts('dev-t');
  const passwd = passwordFile({ 'outpost-cloud': 'cloud-pw' });
  const tlsPort = await freePort();
  const adminPort = await freePort();
  const db = tempDir('mosquitto-db');
  chmodSync(db, 0o777);
  // The shipped file, with only its paths and ports moved into the test's temp dirs, and the
  // mutual TLS lines switched on.
  const conf = readFileSync(join(deployDir, 'mosquitto.conf'), 'utf8')
    .replaceAll('/etc/mosquitto/outpost/certs/', `${certs}/`)
    .replaceAll('/etc/mosquitto/outpost/passwd', passwd)
    .replaceAll('/etc/mosquitto/outpost/outpost.acl', ACL)
    .replaceAll('/var/lib/mosquitto/', `${db}/`)
    .replace('listener 8883', `listener ${tlsPort} 127.0.0.1`)
    .replace('listener 1883 127.0.0.1', `listener ${adminPort} 127.0.0.1`)
    .replace('#require_certificate true', 'require_certificate true')
    .replace('#use_identity_as_username true', 'use_identity_as_username true');
  const confFile = join(tempDir('mosquitto-conf'), 'mosquitto.conf');
  writeFileSync(confFile, `${conf}\nlog_dest stderr\nlog_type error\n`);
  const child: ChildProcess = spawn(mosquittoPath() as string, ['-c', confFile], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const clients: MqttClient[] = [];
  let agent: Agent | undefined;
  try {
    await waitPort(tlsPort);
    await waitPort(adminPort);
    const cloud = await mqtt.connectAsync(`mqtt://127.0.0.1:${adminPort}`, {
      username: 'outpost-cloud',
      password: 'cloud-pw',
    });
    clients.push(cloud);
    await cloud.subscribeAsync('outpost/v1/#', { qos: 1 });
    const seen = listen(cloud);
    agent = await pushAgent('dev-t', {
      url: `mqtts://127.0.0.1:${tlsPort}`,
      tls: { ca: join(certs, 'ca.crt'), cert: join(certs, 'client.crt'), key: join(certs, 'client.key') },
    });
    await waitFor(() => agent?.uplink?.state === 'connected', 'the TLS uplink');
    await push(agent, 42);
    await waitFor(
      () => seen.some((m) => m.topic === topics.pred('dev-t', 'linear-regression')),
      'the prediction over TLS',
    );

    // Without a client certificate the TLS listener refuses the device.
    const anonymous = mqtt.connect(`mqtts://127.0.0.1:${tlsPort}`, {
      ca: readFileSync(join(certs, 'ca.crt')),
      reconnectPeriod: 0,
      connectTimeout: 3_000,
    });
    const outcome = await new Promise<string>((resolve) => {
      anonymous.once('connect', () => resolve('connected'));
      anonymous.once('error', (err) => resolve(`error: ${err.message}`));
      anonymous.once('close', () => resolve('closed'));
    });
    anonymous.end(true);
    assert.notEqual(outcome, 'connected');
  } finally {
    await agent?.stop();
    for (const c of clients) await c.endAsync(true);
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await gone;
  }
});
