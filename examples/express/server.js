'use strict';

// Runs the example app standalone.
//   REDIS_URL  redis-server with jwtdeny loaded (default redis://127.0.0.1:6390, the port of `make run`)
//   PORT       HTTP port (default 3000)
//   JWKS_FILE  keys for /login; must be the file redis-server loads (default ../jwks.json)

const { createClient } = require('redis');
const { createApp } = require('./app');

async function main() {
  const client = createClient({
    url: process.env.REDIS_URL || 'redis://127.0.0.1:6390',
    // Fail requests at once (503) while Redis is down instead of queueing them, and keep
    // reconnecting so that they succeed again once it is back.
    disableOfflineQueue: true,
    socket: {
      connectTimeout: 2000,
      reconnectStrategy: (retries) => Math.min(100 * 2 ** retries, 2000),
    },
  });
  client.on('error', (err) => console.error(`redis: ${err.message}`));
  await client.connect();

  const app = createApp(client, { jwksFile: process.env.JWKS_FILE });
  const port = Number(process.env.PORT || 3000);
  const server = app.listen(port, () => {
    console.log(`jwtdeny express example on http://127.0.0.1:${port}`);
  });

  const stop = () => {
    server.close();
    client.close().catch(() => client.destroy());
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
