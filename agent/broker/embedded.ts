import type { AddressInfo } from 'node:net';
import { createServer, type Server, type Socket } from 'node:net';

export interface EmbeddedBroker {
  port: number;
  url: string;
  stop(): Promise<void>;
}

/**
 * An in-process MQTT broker (aedes, MQTT 3.1.1 only) for the demo and for boxes without a
 * broker of their own. It binds loopback unless told otherwise.
 */
export async function startEmbeddedBroker(
  options: { host?: string; port?: number } = {},
): Promise<EmbeddedBroker> {
  const host = options.host ?? '127.0.0.1';
  // Loaded here: most agents never start the embedded broker.
  const { Aedes } = await import('aedes');
  const broker = await Aedes.createBroker();
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    broker.handle(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 1883, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `mqtt://${host}:${port}`,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => broker.close(() => resolve()));
    },
  };
}
