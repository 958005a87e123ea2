// Compiled with `tsc --noEmit` against the installed package's index.d.ts (run-tests.sh):
// the documented calls type-check, with node-redis, ioredis, Express and Fastify.
import express from 'express';
import Fastify from 'fastify';
import { Cluster, Redis } from 'ioredis';
import { createClient, createCluster } from 'redis';
import jwtdeny, { createJwtdeny, JwtdenyError, type Claims, type TokenErrorCode } from 'jwtdeny';

export async function usage(token: string): Promise<void> {
  const client = createClient({ disableOfflineQueue: true });
  await client.connect();
  const jd = createJwtdeny(client, { prefix: 'jwtdeny:' });
  const { active, claims } = await jd.check(token, { withClaims: true });
  const sub: string | undefined = claims?.sub;
  const revoked: boolean = await jd.revoke(Buffer.from(token));
  const cutoff: number = await jd.revokeAll('alice', { at: 1767225600 });
  const fields = await jd.inspect(token);
  const ended: boolean = await jd.logout(token);
  const sessionEnded: boolean = await jd.revokeSession('alice', 'sid-1');
  console.log(ended, sessionEnded);
  console.log(active, sub, revoked, cutoff, fields.status);
  const bound = await jd.checkDpop(token, 'proof', 'GET', 'https://api.example.com/x', { withClaims: true });
  const mtls = await jd.check(token, { cert: 'x5t' });
  console.log(bound.active, mtls.active);

  createJwtdeny(createCluster({ rootNodes: [{ url: 'redis://127.0.0.1:7000' }] }));
  createJwtdeny(new Redis());
  createJwtdeny(new Cluster([{ host: '127.0.0.1', port: 7000 }]));
  jwtdeny.createJwtdeny(new Redis(), { cluster: false });

  try {
    await jd.check(token);
  } catch (err) {
    if (err instanceof JwtdenyError) {
      const code: TokenErrorCode = err.code;
      console.log(code, err.dpopError, err.nonce);
    }
  }

  const app = express();
  app.use(jd.express());
  app.use(jd.express({ trustProxy: true, dpopAlgs: 'ES256 EdDSA' }));
  app.use(jd.express({ getToken: (req) => req.get('x-token'), onUnavailable: (_e, _req, res) => res.sendStatus(503) }));
  app.get('/me', (req, res) => {
    const c: Claims | undefined = req.auth;
    res.json({ sub: c?.sub, jkt: req.dpop?.jkt });
  });

  const f = Fastify();
  f.decorateRequest('auth', null);
  f.addHook('onRequest', jd.fastify());
  f.addHook('preHandler', jd.fastify({ onUnavailable: (_e, _request, reply) => reply.code(503).send() }));
}

export async function misuse(): Promise<void> {
  // @ts-expect-error: a token is a string or bytes
  await createJwtdeny(new Redis()).check(42);
  // @ts-expect-error: active is a boolean
  const wrong: number = (await createJwtdeny(new Redis()).check('t')).active;
  console.log(wrong);
}
