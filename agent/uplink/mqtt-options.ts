import { readFileSync } from 'node:fs';
import type { IClientOptions } from 'mqtt';

export interface MqttConnectionConfig {
  url: string;
  username?: string | undefined;
  password?: string | undefined;
  tls?:
    | {
        ca?: string | undefined;
        cert?: string | undefined;
        key?: string | undefined;
        rejectUnauthorized: boolean;
      }
    | undefined;
}

const quiet = () => {};

/** Connection options shared by the uplink and the sensor bus: credentials, TLS and mutual TLS. */
export function connectionOptions(c: MqttConnectionConfig): IClientOptions {
  const options: IClientOptions = {
    // mqtt.js resets its keepalive timer after every packet it sends by default: a timer
    // operation per message at full rate, to save one PINGREQ per keepalive interval.
    reschedulePings: false,
  };
  // mqtt.js traces every packet through `debug`; even switched off, those calls cost a few
  // percent of the agent's CPU at full rate. With DEBUG set (troubleshooting) they stay.
  if ((process.env.DEBUG ?? '') === '') options.log = quiet;
  if (c.username !== undefined) options.username = c.username;
  if (c.password !== undefined) options.password = c.password;
  if (c.tls !== undefined) {
    if (c.tls.ca !== undefined) options.ca = readFileSync(c.tls.ca);
    if (c.tls.cert !== undefined) options.cert = readFileSync(c.tls.cert);
    if (c.tls.key !== undefined) options.key = readFileSync(c.tls.key);
    options.rejectUnauthorized = c.tls.rejectUnauthorized;
  }
  return options;
}
