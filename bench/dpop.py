"""DPoP requests for the benchmark (issue 19): one access token bound to a test key's RFC 7638
thumbprint and `count` fresh proofs by that key, signed by `jwtbench sign` with the repo's test
keys. Used by bench/run.py (section 10) and bench/instructions.py. Standard library only."""

import base64
import hashlib
import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
JWKS = REPO / "tests" / "vectors" / "jwks.json"
KIDS = {"RS256": "shared-rsa", "ES256": "shared-es256", "EdDSA": "shared-ed25519"}
URL = "https://api.example.com/orders"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(alg: str) -> dict:
    """The test key's public JWK as a proof carries it: no kid, alg or use."""
    keys = json.loads(JWKS.read_text())["keys"]
    jwk = next(k for k in keys if k["kid"] == KIDS[alg])
    return {m: v for m, v in jwk.items() if m not in ("kid", "alg", "use", "key_ops")}


def thumbprint(jwk: dict) -> str:
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
    canonical = json.dumps({m: jwk[m] for m in required[jwk["kty"]]}, separators=(",", ":"),
                           sort_keys=True)
    return b64(hashlib.sha256(canonical.encode()).digest())


def sign(jwtbench, key_dir, alg, pairs):
    lines = "".join(f"{json.dumps(h, separators=(',', ':'))}\t{json.dumps(p, separators=(',', ':'))}\n"
                    for h, p in pairs)
    out = subprocess.run([str(jwtbench), "sign", "--alg", alg, "--key-dir", str(key_dir)],
                         input=lines, text=True, capture_output=True, check=True).stdout.split()
    if len(out) != len(pairs):
        raise RuntimeError(f"jwtbench sign gave {len(out)} tokens for {len(pairs)} lines")
    return out


def requests(jwtbench, key_dir, alg, sub, count, iat, exp, tag="b"):
    """(token, [proofs]): an HS256 token of `sub` bound to `alg`'s test key, and `count` proofs
    for `GET URL` with distinct jtis, issued at `iat`."""
    jwk = public_jwk(alg)
    token = sign(jwtbench, key_dir, "HS256", [(
        {"alg": "HS256", "kid": "shared-hs256", "typ": "at+jwt"},
        {"sub": sub, "iat": iat, "exp": exp, "cnf": {"jkt": thumbprint(jwk)}})])[0]
    ath = b64(hashlib.sha256(token.encode()).digest())
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": jwk}
    proofs = sign(jwtbench, key_dir, alg, [
        (header, {"jti": f"{tag}-{sub}-{i}", "htm": "GET", "htu": URL, "iat": iat, "ath": ath})
        for i in range(count)])
    return token, proofs


def commands(token, proofs):
    """One JWTDENY.CHECKDPOP a request."""
    return [["JWTDENY.CHECKDPOP", token, p, "GET", URL] for p in proofs]
