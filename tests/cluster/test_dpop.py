"""DPoP in Redis Cluster (issue 19): KCHECKDPOP reaches the node of the token subject's slot with
the proof's one-time record declared beside the token's keys, a proof is used once whatever node
or client replays it, and moving the slot (records and all) never lets a replayed proof or a
revoked token answer 1. Proofs are minted with PyJWT and cryptography, thumbprints per RFC 7638
here, independently of the module."""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import threading
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from redis.exceptions import RedisError, ResponseError

from conftest import mint, move_slot, slot_of, subs_in_slot, wait_for_progress
from jwtdeny_keys import dpop_replay_key, kcheckdpop, keys_for, krevoke, subject_key, third_key_for

URL = "https://api.example.com/orders"


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Holder:
    """A client's DPoP key pair (cryptography) with its public JWK and RFC 7638 thumbprint."""

    def __init__(self, alg: str):
        self.alg = alg
        if alg == "ES256":
            self.key = ec.generate_private_key(ec.SECP256R1())
        elif alg == "RS256":
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.key = ed25519.Ed25519PrivateKey.generate()
        self.jwk = json.loads(jwt.get_algorithm_by_name(alg).to_jwk(self.key.public_key()))
        required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
        canonical = json.dumps({m: self.jwk[m] for m in required[self.jwk["kty"]]},
                               separators=(",", ":"), sort_keys=True)
        self.jkt = _b64(hashlib.sha256(canonical.encode()).digest())

    def proof(self, token: str, method: str = "GET", url: str = URL, **extra) -> str:
        claims = {"jti": str(uuid.uuid4()), "htm": method, "htu": url, "iat": int(time.time()),
                  "ath": _b64(hashlib.sha256(token.encode()).digest()), **extra}
        return jwt.encode(claims, self.key, algorithm=self.alg,
                          headers={"typ": "dpop+jwt", "jwk": self.jwk})


def bound(sub: str, holder: Holder) -> str:
    return mint(sub, cnf={"jkt": holder.jkt})


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_a_proof_is_used_once_through_any_node(cluster, rc, alg):
    h = Holder(alg)
    token = bound(f"dpop-{alg}", h)
    proof = h.proof(token)
    assert kcheckdpop(rc, token, proof, "GET", URL) == 1
    # Replayed through the cluster client, and straight at every master (MOVED elsewhere).
    with pytest.raises(ResponseError, match="^DPOP invalid_dpop_proof .*used already"):
        kcheckdpop(rc, token, proof, "GET", URL)
    owner = cluster.owner(slot_of(subject_key(f"dpop-{alg}")))
    with pytest.raises(ResponseError, match="used already"):
        kcheckdpop(owner.client(), token, proof, "GET", URL)
    # A bound token through KSCHECK (the Bearer path) is never 1.
    with pytest.raises(ResponseError, match="^DPOP invalid_token"):
        rc.execute_command("JWTDENY.KSCHECK", *keys_for(token), third_key_for(token), token)
    reply = kcheckdpop(rc, token, h.proof(token, "POST"), "POST", URL, withclaims=True)
    assert reply[0] == 1 and json.loads(reply[1])["cnf"]["jkt"] == h.jkt


def test_standalone_and_mismatched_forms_are_refused(cluster, rc):
    h = Holder("ES256")
    token = bound("dpop-forms", h)
    proof = h.proof(token)
    owner = cluster.owner(slot_of(subject_key("dpop-forms"))).client()
    with pytest.raises(ResponseError, match="KCHECKDPOP"):
        owner.execute_command("JWTDENY.CHECKDPOP", token, proof, "GET", URL)
    entry, subject = keys_for(token)
    wrong = dpop_replay_key("dpop-forms", h.jkt, "another-jti")
    with pytest.raises(ResponseError, match="does not match"):
        rc.execute_command("JWTDENY.KCHECKDPOP", entry, subject, third_key_for(token), wrong,
                           token, proof, "GET", URL)
    # Neither refusal spent the proof.
    assert kcheckdpop(rc, token, proof, "GET", URL) == 1


def test_moving_the_slot_never_accepts_a_replay_or_a_revoked_token(cluster):
    rc = cluster.rc()
    h = Holder("ES256")
    sub = "dpop-moved"
    slot = slot_of(subject_key(sub))
    token = bound(sub, h)
    revoked = mint(subs_in_slot(slot, 1, "dpop-moved-r")[0], cnf={"jkt": h.jkt})
    assert krevoke(rc, revoked) == 1
    spent = [h.proof(token) for _ in range(10)]
    for p in spent:
        assert kcheckdpop(rc, token, p, "GET", URL) == 1

    seen = collections.Counter()
    wrong = []
    stop, migrating = threading.Event(), threading.Event()

    def loop():
        own = cluster.rc()
        i = 0
        while not stop.is_set():
            i += 1
            kind = ("replay", "revoked", "fresh")[i % 3]
            t, p = {"replay": (token, spent[i % len(spent)]), "revoked": (revoked, h.proof(revoked)),
                    "fresh": (token, h.proof(token))}[kind]
            try:
                r = kcheckdpop(own, t, p, "GET", URL)
            except ResponseError as e:
                r = str(e).split(" ")[1] if str(e).startswith("DPOP") else str(e).split(" ")[0]
            except (RedisError, OSError) as e:
                r = type(e).__name__
            seen[(kind, migrating.is_set(), r)] += 1
            if (kind in ("replay", "revoked") and r == 1) or (kind == "fresh" and r == 0):
                wrong.append((kind, r))

    th = threading.Thread(target=loop, daemon=True)
    th.start()

    def during():
        return sum(n for (_, m, _), n in list(seen.items()) if m)

    try:
        time.sleep(0.3)
        migrating.set()
        keys = move_slot(cluster, slot, lambda _i, _k: wait_for_progress(during, during()))
        assert len(keys) >= 12  # the token's records, the revoked token's entry
        migrating.clear()
        time.sleep(0.5)
    finally:
        stop.set()
        th.join(timeout=30)
    print("\nDPoP checks while the slot moved (kind, migrating, reply):", sorted(seen.items(), key=str))
    assert wrong == []
    assert during() >= min(10, len(keys))
    cluster.wait_healthy(20)
    rc2 = cluster.rc()
    for p in spent:
        # Refused as used, or (on a slow machine, past the window) as too old: never accepted.
        with pytest.raises(ResponseError, match="used already|in the past"):
            kcheckdpop(rc2, token, p, "GET", URL)
    assert kcheckdpop(rc2, revoked, h.proof(revoked), "GET", URL) == 0
    assert kcheckdpop(rc2, token, h.proof(token), "GET", URL) == 1
