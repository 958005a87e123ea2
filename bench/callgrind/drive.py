"""Sends one batch of JWTDENY.CHECKs for bench/callgrind/run.sh (redis-py and PyJWT, as in
tests/cluster): `cached` 20,000 CHECKs of one token without sid (verified once, then cache
hits), `cached-sid` the same with a sid, `uncached` 5,000 distinct tokens without sid."""

import pathlib
import sys
import time

import jwt
import redis

port, mode = int(sys.argv[1]), sys.argv[2]
repo = pathlib.Path(__file__).resolve().parents[2]
secret = (repo / "tests/vectors/private/shared-hs256.key").read_bytes()
r = redis.Redis(port=port, socket_timeout=600)
now = int(time.time())


def token(sub, **extra):
    claims = {"sub": sub, "iat": now - 10, "exp": now + 86400, **extra}
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "shared-hs256"})


if mode == "uncached":
    tokens = [token(f"user-{i}") for i in range(5000)]
else:
    tokens = [token("alice", **({"sid": "sess-1"} if mode == "cached-sid" else {}))] * 20000
pipe = r.pipeline(transaction=False)
for t in tokens:
    pipe.execute_command("JWTDENY.CHECK", t)
replies = pipe.execute()
assert all(x == 1 for x in replies), set(map(str, replies))
print(mode, len(replies), "CHECKs answered 1")
