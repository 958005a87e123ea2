#!/usr/bin/env python3
"""Mint a compact HS256 JWT signed with an `oct` key from a JWKS, for trying jwtdeny by hand.

Prints only the token, so that `TOKEN=$(python3 examples/mint-token.py)` works.
Standard library only: this is a demo helper, not a JWT library.
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
from pathlib import Path

DEFAULT_JWKS = Path(__file__).resolve().with_name("jwks.json")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact_json(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def load_secret(jwks_path: Path, kid: str) -> bytes:
    try:
        jwks = json.loads(jwks_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        sys.exit(f"mint-token: cannot read JWKS {jwks_path}: {err}")
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list):
        sys.exit(f"mint-token: {jwks_path} is not a JWKS (no \"keys\" array)")
    for key in keys:
        if isinstance(key, dict) and key.get("kid") == kid:
            if key.get("kty") != "oct" or not isinstance(key.get("k"), str):
                sys.exit(f"mint-token: key {kid!r} is not an oct (HMAC) key")
            if key.get("alg", "HS256") != "HS256":
                sys.exit(f"mint-token: key {kid!r} is for {key['alg']}, not HS256")
            return b64url_decode(key["k"])
    sys.exit(f"mint-token: no key with kid {kid!r} in {jwks_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jwks", type=Path, default=DEFAULT_JWKS,
                        help="JWKS holding the signing key (default: examples/jwks.json)")
    parser.add_argument("--kid", default="demo-hs256", help="kid of the oct key (default: demo-hs256)")
    parser.add_argument("--sub", default="alice", help="subject (default: alice)")
    parser.add_argument("--ttl", type=int, default=3600,
                        help="exp = now + TTL seconds; negative mints an expired token (default: 3600)")
    parser.add_argument("--iss", help="issuer claim (omitted by default)")
    parser.add_argument("--aud", action="append",
                        help="audience claim; repeat for an array (omitted by default)")
    parser.add_argument("--nbf", type=int, metavar="SECONDS",
                        help="nbf = now + SECONDS (omitted by default)")
    args = parser.parse_args()

    secret = load_secret(args.jwks, args.kid)
    now = int(time.time())
    claims = {"sub": args.sub, "iat": now, "exp": now + args.ttl}
    if args.iss is not None:
        claims["iss"] = args.iss
    if args.aud:
        claims["aud"] = args.aud[0] if len(args.aud) == 1 else args.aud
    if args.nbf is not None:
        claims["nbf"] = now + args.nbf

    header = {"alg": "HS256", "kid": args.kid, "typ": "JWT"}
    signing_input = b64url_encode(compact_json(header)) + "." + b64url_encode(compact_json(claims))
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    print(signing_input + "." + b64url_encode(signature))


if __name__ == "__main__":
    main()
