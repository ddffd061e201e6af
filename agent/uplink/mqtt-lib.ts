/**
 * mqtt.js, loaded on first use. The uplink and the sensor bus are optional: an agent with both
 * off (HTTP only) never pays for the library, about 15 MiB of resident memory at start.
 */
let loading: Promise<typeof import('mqtt')> | undefined;

export function loadMqtt(): Promise<typeof import('mqtt')> {
  loading ??= import('mqtt');
  return loading;
}
