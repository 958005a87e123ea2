"""OIDC sessions in Redis Cluster (issue 11): KLOGOUT and KREVOKESESSION end a session on the
node that owns its subject's slot, KSCHECK (and KCHECK, which reads the session key in the same
slot) refuse its tokens through every client and node, the helpers derive the keys the server
derives, and moving the slot of a session never lets a revoked token answer 1.

The module gets its own cluster: sessions need jwtdeny.max-lifetime, which the shared cluster's
tokens (valid until 2100) would exceed."""

from __future__ import annotations

import collections
import json
import random
import subprocess
import threading
import time

import jwt
import pytest
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from conftest import (HS256_KID, HS256_SECRET, REPO, mint, move_slot, slot_of, subs_in_slot,
                      wait_for_progress, wait_replicated)
from jwtdeny_keys import (
    kcheck,
    keys_for,
    kinspect,
    klogout,
    krevokesession,
    logout_keys_for,
    session_key,
    session_key_for,
    subject_key,
)

AUDIENCE = "jwtdeny-tests"
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_LIFETIME = 7200
CASES = json.loads((REPO / "clients/testdata/key-cases.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sessions(own_cluster):
    """The module's cluster, every node configured for sessions."""
    for node in own_cluster.nodes:
        c = node.client()
        c.config_set("jwtdeny.max-lifetime", MAX_LIFETIME)
        c.config_set("jwtdeny.logout-audience", AUDIENCE)
    return own_cluster


def access(sub: str, sid: str | None, iat: int | None = None) -> str:
    iat = int(time.time()) - 60 if iat is None else iat
    extra = {} if sid is None else {"sid": sid}
    return mint(sub, iat=iat, exp=iat + 3600, **extra)


def logout_token(sub: str | None, sid: str | None, iat: int | None = None) -> str:
    now = int(time.time())
    claims = {"aud": AUDIENCE, "iat": now if iat is None else iat, "exp": now + 120,
              "jti": f"j-{random.random()}", "events": {LOGOUT_EVENT: {}}}
    if sub is not None:
        claims["sub"] = sub
    if sid is not None:
        claims["sid"] = sid
    return jwt.encode(claims, HS256_SECRET, algorithm="HS256",
                      headers={"kid": HS256_KID, "typ": "logout+jwt"})


def test_a_session_ends_on_its_node_and_everywhere(sessions):
    rc = sessions.rc()
    sub = "sessions-alice"
    s1, s2, none = access(sub, "s-1"), access(sub, "s-2"), access(sub, None)
    for t in (s1, s2, none):
        assert kcheck(rc, t) == 1
    lo = logout_token(sub, "s-1")
    assert logout_keys_for(lo) == (subject_key(sub), session_key(sub, "s-1"))
    assert klogout(rc, lo) == 1
    assert klogout(rc, lo) == 0  # a provider's retry
    assert kcheck(rc, s1) == 0  # KSCHECK, declaring the session key
    assert rc.execute_command("JWTDENY.KCHECK", *keys_for(s1), s1) == 0  # reads it undeclared
    assert kcheck(rc, s2) == 1
    # A token without sid cannot be told apart by session: any session's end revokes it
    # (KSCHECK declaring the subject's sid-less cutoff; KCHECK reads it undeclared).
    assert kcheck(rc, none) == 0
    assert rc.execute_command("JWTDENY.KCHECK", *keys_for(none), none) == 0
    assert kcheck(rc, access(sub, None, iat=int(time.time()) + 2)) == 1  # issued after it
    fields = kinspect(rc, s1)
    assert dict(zip(fields[::2], fields[1::2]))[b"revoked_by"] == b"session"

    # Through every node with redis-cli -c, and on the slot's replica.
    cmd = ["JWTDENY.KSCHECK", *keys_for(s1), session_key_for(s1), s1]
    for node in sessions.nodes:
        assert sessions.cli_batch(node, [cmd]) == ["0"], node
    wait_replicated(sessions)
    (replica,) = sessions.shard_of(slot_of(subject_key(sub)))[1]
    r = replica.client(single_connection_client=True)
    r.execute_command("READONLY")
    assert r.execute_command(*cmd) == 0
    assert r.execute_command("JWTDENY.KSCHECK", *keys_for(s2), session_key_for(s2), s2) == 1


def test_a_logout_without_sid_and_revokesession(sessions):
    rc = sessions.rc()
    sub = "sessions-bob"
    a, b = access(sub, "x"), access(sub, None)
    lo = logout_token(sub, None)
    assert logout_keys_for(lo) == (subject_key(sub), subject_key(sub))
    assert klogout(rc, lo) == 1
    assert kcheck(rc, a) == 0 and kcheck(rc, b) == 0

    carol = "sessions-carol"
    c1, c2 = access(carol, "c-1"), access(carol, "c-2")
    assert krevokesession(rc, carol, "c-1") == 1
    assert kcheck(rc, c1) == 0 and kcheck(rc, c2) == 1


def test_standalone_and_mismatched_forms_are_refused(sessions):
    rc = sessions.rc()
    sub = "sessions-dave"
    lo = logout_token(sub, "d-1")
    subject, session = subject_key(sub), session_key(sub, "d-1")
    owner = sessions.shard_of(slot_of(subject))[0].client()
    with pytest.raises(ResponseError) as e:
        owner.execute_command("JWTDENY.LOGOUT", lo)
    assert str(e.value) == (f"in Redis Cluster use the keyed form JWTDENY.KLOGOUT '{subject}' "
                            f"'{session}' '{subject}:nosid' ... so the command reaches the node that "
                            "holds its keys")
    with pytest.raises(ResponseError) as e:
        owner.execute_command("JWTDENY.REVOKESESSION", sub, "d-1")
    assert "JWTDENY.KREVOKESESSION" in str(e.value)
    # Declared keys that are not the token's own: refused, nothing written.
    other = subs_in_slot(slot_of(subject), 1, "sessions-neighbour")[0]
    with pytest.raises(ResponseError) as e:
        rc.execute_command("JWTDENY.KLOGOUT", subject_key(other), session, lo)
    assert "does not match the derived key" in str(e.value)
    with pytest.raises(ResponseError):
        rc.execute_command("JWTDENY.KLOGOUT", subject, subject, lo)
    # Keys of two slots: Redis's own CROSSSLOT, before jwtdeny runs.
    far = next(s for s in (f"far-{i}" for i in range(100)) if slot_of(subject_key(s)) != slot_of(subject))
    with pytest.raises((ResponseError, RedisError, RedisClusterException)):
        rc.execute_command("JWTDENY.KLOGOUT", subject, session_key(far, "d-1"), lo)
    assert owner.exists(session) == 0


def test_the_helpers_session_keys_are_the_servers(sessions):
    """Every shared key case with a session: KSCHECK with the helpers' keys is accepted."""
    from conftest import mint_raw

    rc = sessions.rc()
    now = int(time.time())
    tokens = []
    for c in CASES["cases"]:
        if c.get("error") or "session" not in c:
            continue
        payload = json.loads(c["payload"])
        # A fresh iat and an exp within max-lifetime; the sub and sid spellings stay.
        text = c["payload"].rstrip().rstrip("}") + f',"exp":{now + 600}}}'
        text = text.replace(f'"iat":{payload["iat"]}', f'"iat":{now - 60}')
        tokens.append((c.get("note"), mint_raw(text), c))
    assert len(tokens) >= 4
    pipe = rc.pipeline()
    for _, t, c in tokens:
        entry, subject = keys_for(t)
        assert session_key_for(t) == c["session"]
        pipe.execute_command("JWTDENY.KSCHECK", entry, subject, c["session"], t)
    assert pipe.execute(raise_on_error=False) == [1] * len(tokens)
    # And the Node helper agrees.
    script = ("const jk = require(process.argv[1]);"
              "const ts = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
              "console.log(JSON.stringify(ts.map((t) => jk.sessionKeyFor(t))));")
    out = subprocess.run(["node", "-e", script, str(REPO / "clients/node/jwtdeny-keys.js")],
                         input=json.dumps([t for _, t, _ in tokens]), capture_output=True,
                         text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == [c["session"] for _, _, c in tokens]


def test_moving_the_slot_of_a_session_never_answers_1_for_its_tokens(sessions):
    rc = sessions.rc()
    now = int(time.time())
    sub = "sessions-moved"
    slot = slot_of(subject_key(sub))
    neighbour = subs_in_slot(slot, 1, "sessions-moved-n")[0]
    ended = [access(sub, f"m-{i}", iat=now - 100 + i) for i in range(20)]
    for i in range(20):
        assert klogout(rc, logout_token(sub, f"m-{i}")) == 1
    ended += [access(neighbour, "n-1", iat=now - 50)]
    assert krevokesession(rc, neighbour, "n-1") == 1
    active = [access(sub, "live", iat=now - 30), access(neighbour, "n-2", iat=now - 30)]
    for t in ended:
        assert kcheck(rc, t) == 0
    for t in active:
        assert kcheck(rc, t) == 1

    seen = collections.Counter()
    wrong = []
    stop, migrating = threading.Event(), threading.Event()

    def check_loop():
        own = sessions.rc()
        rng = random.Random(3)
        while not stop.is_set():
            kind = "ended" if rng.random() < 0.8 else "active"
            t = rng.choice(ended if kind == "ended" else active)
            form = rng.choice(["KSCHECK", "KCHECK"])
            try:
                if form == "KSCHECK":
                    r = kcheck(own, t)
                else:
                    r = own.execute_command("JWTDENY.KCHECK", *keys_for(t), t)
            except (RedisError, OSError) as e:
                r = type(e).__name__
            seen[(kind, form, migrating.is_set(), r)] += 1
            if (kind, r) in (("ended", 1), ("active", 0)):
                wrong.append((kind, form, r))

    th = threading.Thread(target=check_loop, daemon=True)
    th.start()

    def during():
        return sum(n for (_, _, m, _), n in list(seen.items()) if m)

    try:
        time.sleep(0.3)
        migrating.set()
        keys = move_slot(sessions, slot, lambda _i, _k: wait_for_progress(during, during()))
        assert len(keys) >= 21
        migrating.clear()
        time.sleep(0.5)
    finally:
        stop.set()
        th.join(timeout=30)
    print("\nsession checks while the slot moved (kind, form, migrating, reply):",
          sorted(seen.items(), key=str))
    assert wrong == []
    assert during() >= min(10, len(keys))
    sessions.wait_healthy(20)
    rc2 = sessions.rc()
    for t in ended:
        assert kcheck(rc2, t) == 0
        assert rc2.execute_command("JWTDENY.KCHECK", *keys_for(t), t) == 0
    for t in active:
        assert kcheck(rc2, t) == 1


def test_node_redis_ends_a_session_and_sees_it(sessions):
    """node-redis createCluster through the Node helpers: KLOGOUT, KREVOKESESSION, KSCHECK."""
    rc = sessions.rc()
    sub = "sessions-node"
    s1, s2, s3 = access(sub, "n-1"), access(sub, "n-2"), access(sub, "n-3")
    scenario = {"root": sessions.live()[0].addr, "logout": logout_token(sub, "n-1"),
                "sub": sub, "tokens": [s1, s2, s3]}
    script = r"""
const { createCluster } = require(process.argv[2]);
const jk = require(process.argv[1]);
const S = JSON.parse(require('fs').readFileSync(0, 'utf8'));
(async () => {
  const c = createCluster({ rootNodes: [{ url: `redis://${S.root}` }] });
  c.on('error', () => {});
  await c.connect();
  const out = [await jk.klogout(c, S.logout), await jk.klogout(c, S.logout),
               await jk.krevokesession(c, S.sub, 'n-3')];
  for (const t of S.tokens) out.push(await jk.kcheck(c, t));
  await c.close();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""
    node_redis = REPO / "tests/cluster/node/node_modules/redis"
    out = subprocess.run(["node", "-e", script, str(REPO / "clients/node/jwtdeny-keys.js"),
                          str(node_redis)], input=json.dumps(scenario), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [1, 0, 1, 0, 1, 0]
    # redis-py sees what node-redis did.
    assert [kcheck(rc, t) for t in (s1, s2, s3)] == [0, 1, 0]
