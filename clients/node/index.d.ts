// Types of the jwtdeny package (index.js / index.mjs). No dependency on any Redis or HTTP
// framework's types: the client and request shapes below are the few members jwtdeny uses.

/** The first word of the error reply jwtdeny sends for a token it refuses. */
export type TokenErrorCode =
  | 'MALFORMED'
  | 'BADALG'
  | 'NOKEY'
  | 'BADSIG'
  | 'BADCLAIMS'
  | 'EXPIRED'
  | 'NOTYET'
  | 'DPOP';

/** The OAuth error a `DPOP` refusal names (its second word). */
export type DpopErrorCode = 'invalid_token' | 'invalid_dpop_proof' | 'use_dpop_nonce';

export declare const TOKEN_ERROR_CODES: readonly TokenErrorCode[];
export declare const DEFAULT_PREFIX: string;

/** A token jwtdeny refuses (the server's error reply, or a cluster token whose keys cannot be derived). */
export declare class JwtdenyError extends Error {
  constructor(code: TokenErrorCode, message: string, options?: { cause?: unknown });
  readonly name: 'JwtdenyError';
  readonly code: TokenErrorCode;
  /** For code `DPOP`: the OAuth error (`invalid_token`, `invalid_dpop_proof`, `use_dpop_nonce`). */
  readonly dpopError?: DpopErrorCode;
  /** For `use_dpop_nonce`: the nonce to send back in a `DPoP-Nonce` header. */
  readonly nonce?: string;
}

/** The verified payload of a token, as its issuer signed it. */
export interface Claims {
  sub: string;
  iat: number;
  exp: number;
  [claim: string]: unknown;
}

export type Token = string | Uint8Array;

/** A node-redis client or cluster, or an ioredis Redis or Cluster. */
export type RedisClientLike =
  | { sendCommand(...args: any[]): Promise<unknown> }
  | { call(...args: any[]): Promise<unknown>; sendCommand(...args: any[]): unknown };

export interface JwtdenyOptions {
  /** The server's `jwtdeny.prefix` (default `jwtdeny:`): the cluster keys start with it. */
  prefix?: string;
  /** Force the keyed forms (true) or the standalone ones (false); default: by the client's kind. */
  cluster?: boolean;
  /**
   * The server's `jwtdeny.issuers-file` (its parsed JSON, or an `Issuers`): the keyed forms then
   * derive the scoped keys (`<prefix>{%<name>:<sub>}…`) of its issuers' subjects.
   */
  issuers?: RegistryJson | Issuers;
}

/** The JSON of a `jwtdeny.issuers-file`. */
export interface RegistryJson {
  issuers: Record<string, { issuer: string; tenants?: string[]; [field: string]: unknown }>;
}

/** Places tokens by their `iss` as the server does: the scope of their subjects' keys. */
export declare class Issuers {
  constructor(registry: RegistryJson);
  /** `%<name>:` or `%<name>.<tenant>:` for an iss of the registry, `''` for the default issuer's. */
  scopeOf(iss: unknown): string;
  scopeFor(token: Token): string;
  /** The scope `ISSUER <issuer>` names: `default`, an exact issuer's name, or an iss of the registry. */
  scopeNamed(issuer: string): string;
}

/** Key options: the server's prefix, and the registry that places tokens by issuer. */
export interface KeyOptions {
  prefix?: string;
  issuers?: Issuers;
}

/** Options of the key builders of one subject: the prefix and the subject's issuer's scope. */
export interface SubjectKeyOptions {
  prefix?: string;
  /** `Issuers.scopeOf(iss)`: `''` (the default) for the default issuer. */
  scope?: string;
}

export interface CheckResult {
  /** true: authentic, valid now and not revoked; false: authentic and valid, but revoked. */
  active: boolean;
  /** With `withClaims`, the verified claims of an active token. */
  claims?: Claims;
}

/** JWTDENY.INSPECT's fields: status, reason, alg, kid, sub, iat, exp, key, revoked_by, expires_at_ms. */
export type Inspection = Record<string, string | number | null>;

export interface GuardOptions<Req> {
  /** Where the token is; default: the `Authorization: Bearer` header. */
  getToken?: (req: Req) => string | null | undefined | Promise<string | null | undefined>;
  /** How long the check may take before the guard answers 503 (default 2000 ms; 0: no limit). */
  timeoutMs?: number;
  /** The 503's `Retry-After`, in seconds (default 5). */
  retryAfter?: number;
  /**
   * For `Authorization: DPoP` requests: take the URL's scheme and host from X-Forwarded-Proto /
   * X-Forwarded-Host (set it only behind a proxy that sets them). Default false.
   */
  trustProxy?: boolean;
  /** The `algs` of the 401's `WWW-Authenticate: DPoP` challenge (default: the server's default list). */
  dpopAlgs?: string;
  /** false: a request without a token goes on without `auth` (optional authentication). Default true. */
  credentialsRequired?: boolean;
  /** Scopes the token must grant (its `scope` string or `scp` array); else 403 `insufficient_scope`. */
  requiredScopes?: string | string[];
  /** A check of the verified claims; false gives 403 `insufficient_scope` (code `CLAIM_CHECK`). */
  claimCheck?: (claims: Claims) => boolean | Promise<boolean>;
  /** Paths let through unchecked: exact strings or RegExps, matched against the path without its query. */
  exclude?: Array<string | RegExp>;
  /** true: guard OPTIONS requests too; by default CORS preflights pass unchecked. */
  guardPreflight?: boolean;
  /**
   * The SHA-256 thumbprint (base64url or hex) of the client certificate the TLS terminator saw,
   * for tokens bound to one (`cnf.x5t#S256`, RFC 8705); e.g. from a header the proxy sets.
   */
  getCert?: (req: Req) => string | null | undefined | Promise<string | null | undefined>;
}

/** The sentence of each guard refusal's `error_description`, by its `code`. */
export declare const ERROR_DESCRIPTIONS: Readonly<Record<string, string>>;

/** Every refusal's body: RFC 6750's `error`, a sentence, and the stable `code`. */
export interface ErrorBody {
  error: string;
  error_description: string;
  /** `MISSING`, a token error code, `REVOKED`, `INSUFFICIENT_SCOPE`, `CLAIM_CHECK` or `UNAVAILABLE`. */
  code: string;
}

/** A refusal handed to Express's error handler (`passErrors: true`). */
export declare class JwtdenyAuthError extends Error {
  readonly name: 'JwtdenyAuthError';
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: ErrorBody;
  readonly code: string;
}

/** A guard's check that did not complete within its `timeoutMs` (given to `onUnavailable`). */
export declare class CheckTimeoutError extends Error {
  readonly name: 'CheckTimeoutError';
}

export interface IncomingLike {
  headers: { authorization?: string | string[]; [name: string]: unknown };
  method?: string;
  url?: string;
}

/** What a guard sets beside the claims for an `Authorization: DPoP` request. */
export interface DpopInfo {
  /** The RFC 7638 thumbprint of the client's DPoP key (the token's cnf.jkt). */
  jkt: string;
}

/** The algorithms a guard's DPoP challenge names by default. */
export declare const DEFAULT_DPOP_ALGS: string;
/** The absolute URL a request was addressed to (scheme, Host, path), as DPoP's htu names it. */
export declare function requestUrl(req: IncomingLike, trustProxy?: boolean): string;
/** `<prefix>{<sub>}:dpop:<base64url SHA-256 of jkt:jti>`: a DPoP proof's one-time record. */
export declare function dpopReplayKey(sub: string, jkt: string, jti: string, options?: SubjectKeyOptions): string;
/** The four keys JWTDENY.KCHECKDPOP declares for a bound token and its proof (read unverified). */
export declare function dpopKeysFor(token: Token, proof: Token, options?: KeyOptions): { entry: string; subject: string; third: string; replay: string };
export interface ResponseLike {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(body?: string): unknown;
}

export interface ExpressGuardOptions<Req, Res> extends GuardOptions<Req> {
  /**
   * Replaces the 503 answered while Redis cannot be reached. Calling `next()` here lets
   * requests in unchecked: revoked tokens are then accepted. Dangerous.
   */
  onUnavailable?: (err: unknown, req: Req, res: Res, next: (err?: unknown) => void) => unknown;
  /** true: refusals go to `next(err)` as a JwtdenyAuthError, for the app's error handler. */
  passErrors?: boolean;
}

export interface FastifyReplyLike {
  code(status: number): FastifyReplyLike;
  headers(values: Record<string, string>): FastifyReplyLike;
  send(payload?: unknown): FastifyReplyLike;
}

export interface FastifyGuardOptions<Req, Reply> extends GuardOptions<Req> {
  /** Replaces the 503; returning without sending lets the request in unchecked. Dangerous. */
  onUnavailable?: (err: unknown, request: Req, reply: Reply) => unknown;
}

export interface Jwtdeny {
  /** Whether the keyed (Redis Cluster) forms are used. */
  readonly cluster: boolean;
  /** JWTDENY.CHECK; rejects with JwtdenyError for a refused token. `cert`: the SHA-256 thumbprint of the client certificate (mTLS-bound tokens). */
  check(token: Token, options?: { withClaims?: boolean; cert?: string }): Promise<CheckResult>;
  /** JWTDENY.CHECKDPOP (a write: the proof is used up): a DPoP-bound token with its proof, for the request's method and absolute URL. */
  checkDpop(token: Token, proof: Token, method: string, url: string, options?: { withClaims?: boolean; cert?: string }): Promise<CheckResult>;
  /** JWTDENY.REVOKE: true revoked now, false already revoked. */
  revoke(token: Token): Promise<boolean>;
  /** JWTDENY.REVOKEALL: revokes every token of `sub` issued at or before `at` (default now); the cutoff in force. */
  /** `issuer`: whose `sub` (an issuer's name or an iss of jwtdeny.issuers-file; default the default issuer). */
  revokeAll(sub: string, options?: { at?: number; issuer?: string }): Promise<number>;
  /** JWTDENY.INSPECT: read-only diagnostics. */
  inspect(token: Token): Promise<Inspection>;
  /** JWTDENY.LOGOUT: ends what an OIDC back-channel logout token names; true ended now, false already ended. */
  logout(logoutToken: Token): Promise<boolean>;
  /** JWTDENY.REVOKESESSION: every token of `sub` carrying `sid`, issued until now; true ended now, false already ended. */
  revokeSession(sub: string, sid: string, options?: { issuer?: string }): Promise<boolean>;
  /** Express / Connect middleware: req.auth = claims, 401 for a refused token, 503 when Redis is down. */
  express<Req extends IncomingLike = any, Res extends ResponseLike = any>(
    options?: ExpressGuardOptions<Req, Res>,
  ): (req: Req, res: Res, next: (err?: unknown) => void) => Promise<void>;
  /** Fastify onRequest / preHandler hook, the same rules; sets request.auth. */
  fastify<Req extends IncomingLike = any, Reply extends FastifyReplyLike = any>(
    options?: FastifyGuardOptions<Req, Reply>,
  ): (request: Req, reply: Reply) => Promise<unknown>;
}

export declare function createJwtdeny(client: RedisClientLike, options?: JwtdenyOptions): Jwtdeny;

/** The token of an `Authorization: Bearer <token>` header, or null. */
export declare function bearerToken(req: IncomingLike): string | null;

/** The keys jwtdeny derives from a token (unverified): `<prefix>{<sub>}:<iat>` and `<prefix>{<sub>}`. */
export declare function keysFor(token: Token, options?: KeyOptions): { entry: string; subject: string };
export declare function subjectKey(sub: string, options?: SubjectKeyOptions): string;
export declare function entryKey(sub: string, iat: number, options?: SubjectKeyOptions): string;
export declare function sessionKey(sub: string, sid: string, options?: SubjectKeyOptions): string;
/** `<prefix>{<sub>}:sid:<sid>` of a token with a session, null for a token without `sid`. */
export declare function sessionKeyFor(token: Token, options?: KeyOptions): string | null;
/** `<prefix>{<sub>}:nosid`: the cutoff any session's end moves for the subject's tokens without `sid`. */
export declare function sidlessKey(sub: string, options?: SubjectKeyOptions): string;
/** KSCHECK's third key for a token: its session key, or its subject's sid-less key without `sid`. */
export declare function thirdKeyFor(token: Token, options?: KeyOptions): string;
/** The keys JWTDENY.KLOGOUT declares for a logout token (session is the subject key without `sid`). */
export declare function logoutKeysFor(logoutToken: Token, options?: KeyOptions): { subject: string; session: string };
export declare function claimsOf(token: Token): { sub: string; iat: number };
export declare function sidOf(token: Token): string | null;
export declare function encodeSubject(sub: string): string;

declare const jwtdeny: {
  createJwtdeny: typeof createJwtdeny;
  JwtdenyError: typeof JwtdenyError;
  JwtdenyAuthError: typeof JwtdenyAuthError;
  CheckTimeoutError: typeof CheckTimeoutError;
  TOKEN_ERROR_CODES: typeof TOKEN_ERROR_CODES;
  ERROR_DESCRIPTIONS: typeof ERROR_DESCRIPTIONS;
  bearerToken: typeof bearerToken;
  requestUrl: typeof requestUrl;
  DEFAULT_DPOP_ALGS: string;
  dpopReplayKey: typeof dpopReplayKey;
  dpopKeysFor: typeof dpopKeysFor;
  keysFor: typeof keysFor;
  subjectKey: typeof subjectKey;
  entryKey: typeof entryKey;
  claimsOf: typeof claimsOf;
  sessionKey: typeof sessionKey;
  sessionKeyFor: typeof sessionKeyFor;
  sidlessKey: typeof sidlessKey;
  thirdKeyFor: typeof thirdKeyFor;
  logoutKeysFor: typeof logoutKeysFor;
  sidOf: typeof sidOf;
  encodeSubject: typeof encodeSubject;
  DEFAULT_PREFIX: string;
  Issuers: typeof Issuers;
};
export default jwtdeny;

declare global {
  namespace Express {
    interface Request {
      /** The verified claims, set by jwtdeny's express() middleware. */
      auth?: Claims;
      token?: string;
      /** For an `Authorization: DPoP` request: the client key's thumbprint. */
      dpop?: DpopInfo;
    }
  }
}
