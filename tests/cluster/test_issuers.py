"""Several issuers in Redis Cluster (issue 20): a registry issuer's subject has its own hash tag
(`{%<name>:<sub>}`), so the same `sub` at two issuers lives in two slots and neither's revocations
touch the other's; the keyed forms need the scoped keys (the Python helpers derive them from the
same registry), and a scoped subject's revocations follow its slot when it moves.

The module gets its own cluster: every node loads the registry with CONFIG SET."""

from __future__ import annotations

import json
import random
import time

import jwt
import pytest
from redis.exceptions import ResponseError

from conftest import HS256_KID, HS256_SECRET, move_slot, slot_of
from jwtdeny_keys import (
    Issuers,
    kcheck,
    keys_for,
    klogout,
    krevoke,
    krevokeall,
    krevokesession,
    subject_key,
    third_key_for,
)

ACME = "https://acme.example/"
KC = "https://sso.example/realms/{tenant}"
AUDIENCE = "acme-app"
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def secret_of(name: str) -> bytes:
    return f"{name}-secret-of-at-least-thirty-two-bytes!".encode()


@pytest.fixture(scope="module")
def registry(own_cluster):
    """The module's cluster, every node with the same registry: acme (exact, with its own
    max-lifetime and logout audience) and kc (a template with two tenants), each with a key
    under the default issuer's kid."""
    d = own_cluster.base
    reg = {"issuers": {
        "acme": {"issuer": ACME, "max-lifetime": 7200, "logout-audience": AUDIENCE},
        "kc": {"issuer": KC, "tenants": ["t1", "t2"]},
    }}
    for name, entry in reg["issuers"].items():
        path = d / f"{name}.json"
        k = jwt.utils.base64url_encode(secret_of(name)).decode()
        path.write_text(json.dumps({"keys": [{"kty": "oct", "kid": HS256_KID, "alg": "HS256", "k": k}]}))
        entry["keys-file"] = str(path)
    path = d / "issuers.json"
    path.write_text(json.dumps(reg))
    for node in own_cluster.nodes:
        node.client().config_set("jwtdeny.issuers-file", str(path))
    return Issuers(reg)


def token(of: str, iss: str | None, sub: str, iat: int | None = None, **claims) -> str:
    iat = int(time.time()) - 60 if iat is None else iat
    payload = {"sub": sub, "iat": iat, "exp": iat + 3600, **claims}
    if iss is not None:
        payload["iss"] = iss
    key = HS256_SECRET if of == "default" else secret_of(of)
    return jwt.encode(payload, key, algorithm="HS256", headers={"kid": HS256_KID})


def a_sub_in_two_slots(issuers: Issuers) -> str:
    """A subject whose default-issuer and acme keys are in slots on different masters' ranges
    (and always in different slots)."""
    for i in range(1000):
        sub = f"issuers-{i}"
        a, b = slot_of(subject_key(sub)), slot_of(subject_key(sub, scope=issuers.scope_of(ACME)))
        if abs(a - b) > 6000:
            return sub
    raise AssertionError("no subject found")


def test_the_same_sub_at_two_issuers_is_two_subjects_in_two_slots(own_cluster, registry):
    rc = own_cluster.rc()
    sub = a_sub_in_two_slots(registry)
    acme, default = token("acme", ACME, sub), token("default", None, sub)
    assert slot_of(keys_for(acme, issuers=registry)[1]) != slot_of(keys_for(default)[1])
    assert keys_for(acme, issuers=registry)[1] == f"jwtdeny:{{%acme:{sub}}}"
    for t in (acme, default):
        assert kcheck(rc, t, issuers=registry) == 1
    # The same kid, another issuer's key: refused.
    with pytest.raises(ResponseError, match="BADSIG"):
        kcheck(rc, token("acme", KC.replace("{tenant}", "t1"), sub), issuers=registry)
    assert krevoke(rc, acme, issuers=registry) == 1
    assert kcheck(rc, acme, issuers=registry) == 0
    assert kcheck(rc, default) == 1
    # The owner of acme's slot holds the entry; the default subject's owner holds nothing.
    entry = keys_for(acme, issuers=registry)[0]
    assert own_cluster.owner(slot_of(entry)).client().exists(entry) == 1
    # A keyed form given the unscoped keys of a registry token is refused (whatever node).
    with pytest.raises(ResponseError, match="does not match the derived key"):
        rc.execute_command("JWTDENY.KREVOKE", *keys_for(acme), acme)
    # KSCHECK and KCHECK straight at acme's owner, with acme's keys.
    owner = own_cluster.owner(slot_of(entry)).client()
    e, s = keys_for(acme, issuers=registry)
    assert owner.execute_command("JWTDENY.KCHECK", e, s, acme) == 0
    assert owner.execute_command("JWTDENY.KSCHECK", e, s, third_key_for(acme, issuers=registry), acme) == 0


def test_revokeall_and_sessions_by_issuer(own_cluster, registry):
    rc = own_cluster.rc()
    sub = f"issuers-by-{random.randrange(1 << 30)}"
    t1, t2 = KC.replace("{tenant}", "t1"), KC.replace("{tenant}", "t2")
    kc1, kc2 = token("kc", t1, sub), token("kc", t2, sub)
    default = token("default", None, sub)
    assert krevokeall(rc, sub, issuer=t1, issuers=registry) >= int(time.time()) - 1
    assert kcheck(rc, kc1, issuers=registry) == 0
    assert kcheck(rc, kc2, issuers=registry) == 1 and kcheck(rc, default) == 1
    with pytest.raises(ValueError):
        krevokeall(rc, sub, issuer="kc", issuers=registry)  # a template needs its tenant's iss
    # KREVOKEALL names its issuer and its scoped key; another issuer's key is refused.
    with pytest.raises(ResponseError, match="does not match"):
        rc.execute_command("JWTDENY.KREVOKEALL", subject_key(sub), sub, "ISSUER", t2)
    # Sessions of acme (which has a max-lifetime, so a session ends alone).
    s1 = token("acme", ACME, sub, sid="s1")
    other = token("acme", ACME, sub, sid="s2")
    assert kcheck(rc, s1, issuers=registry) == 1
    assert krevokesession(rc, sub, "s1", issuer="acme", issuers=registry) == 1
    assert kcheck(rc, s1, issuers=registry) == 0
    assert kcheck(rc, other, issuers=registry) == 1
    # A back-channel logout of acme ends s2: KLOGOUT with acme's keys, found from its iss.
    now = int(time.time())
    lo = jwt.encode({"iss": ACME, "aud": AUDIENCE, "sub": sub, "sid": "s2", "iat": now,
                     "exp": now + 120, "jti": f"j-{random.random()}", "events": {LOGOUT_EVENT: {}}},
                    secret_of("acme"), algorithm="HS256", headers={"kid": HS256_KID, "typ": "logout+jwt"})
    assert klogout(rc, lo, issuers=registry) == 1
    assert kcheck(rc, other, issuers=registry) == 0
    assert kcheck(rc, default) == 1, "the default issuer's subject untouched"


def test_a_scoped_subjects_revocations_follow_its_slot(own_cluster, registry):
    rc = own_cluster.rc()
    sub = f"issuers-moved-{random.randrange(1 << 30)}"
    now = int(time.time())
    revoked = [token("acme", ACME, sub, iat=now - 100 - i) for i in range(5)]
    # With a sid: a session's end also ends the subject's sid-less tokens issued before it.
    active = token("acme", ACME, sub, iat=now - 10, sid="live")
    for t in revoked:
        assert krevoke(rc, t, issuers=registry) == 1
    # A cutoff (KREVOKEALL ISSUER) and a session's end (KREVOKESESSION) of the same scoped
    # subject: three kinds of keys in the slot that moves.
    before_cutoff = token("acme", ACME, sub, iat=now - 300)
    assert krevokeall(rc, sub, at=now - 200, issuer="acme", issuers=registry) == now - 200
    ended = token("acme", ACME, sub, iat=now - 20, sid="gone")
    kept = token("acme", ACME, sub, iat=now - 20, sid="kept")
    assert krevokesession(rc, sub, "gone", issuer=ACME, issuers=registry) == 1
    scoped = subject_key(sub, scope=registry.scope_of(ACME))
    slot = slot_of(scoped)
    # The default issuer's subject of the same name is elsewhere and keeps nothing of this.
    assert slot_of(subject_key(sub)) != slot
    before = own_cluster.owner(slot)
    moved = {k.decode() if isinstance(k, bytes) else k for k in move_slot(own_cluster, slot)}
    assert {scoped, f"{scoped}:sid:gone", f"{scoped}:nosid"} | {keys_for(t, issuers=registry)[0] for t in revoked} <= moved
    after = own_cluster.owner(slot)
    assert after is not before
    assert after.client().exists(scoped, f"{scoped}:sid:gone", f"{scoped}:nosid") == 3
    rc = own_cluster.rc()
    for t in revoked + [before_cutoff, ended]:
        assert kcheck(rc, t, issuers=registry) == 0
    for t in (active, kept):
        assert kcheck(rc, t, issuers=registry) == 1
    assert kcheck(rc, token("default", None, sub, iat=now - 300)) == 1
    # Revocations after the move land on the new owner.
    assert krevoke(rc, active, issuers=registry) == 1
    assert after.client().exists(keys_for(active, issuers=registry)[0]) == 1
    assert kcheck(rc, active, issuers=registry) == 0


def test_every_node_reads_the_registry(own_cluster, registry):
    """Replicas too (a promoted replica judges tokens with the same issuers)."""
    for node in own_cluster.nodes:
        listed = node.client().execute_command("JWTDENY.ISSUERS", "LIST")
        names = sorted((row[1].decode() if isinstance(row[1], bytes) else row[1]) for row in listed)
        assert names == ["acme", "kc"], node
