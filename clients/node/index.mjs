// ESM entry point: the same objects as the CommonJS index.js (one module instance, so
// `instanceof JwtdenyError` holds whichever way it was loaded).
import jwtdeny from './index.js';

export const {
  createJwtdeny,
  JwtdenyError,
  JwtdenyAuthError,
  CheckTimeoutError,
  TOKEN_ERROR_CODES,
  ERROR_DESCRIPTIONS,
  bearerToken,
  requestUrl,
  DEFAULT_DPOP_ALGS,
  dpopReplayKey,
  dpopKeysFor,
  keysFor,
  subjectKey,
  entryKey,
  sessionKey,
  sessionKeyFor,
  sidlessKey,
  thirdKeyFor,
  logoutKeysFor,
  claimsOf,
  sidOf,
  encodeSubject,
  DEFAULT_PREFIX,
  Issuers,
} = jwtdeny;
export default jwtdeny;
