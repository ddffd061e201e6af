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

/** Connection options shared by the uplink and the sensor bus: credentials, TLS and mutual TLS. */
export function connectionOptions(c: MqttConnectionConfig): IClientOptions {
  const options: IClientOptions = {};
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
