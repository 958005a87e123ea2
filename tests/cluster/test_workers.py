"""The worker pool in a cluster (issue 9 §3). Outside a cluster, with `jwtdeny.workers` > 0, a
CHECK of an uncached asymmetric token is verified on a worker and its denylist lookup runs when
the worker is done. In a cluster the slot could migrate in between, the lookup would find
nothing and answer 1 for a revoked token; so there every CHECK is verified inline, inside the
command Redis routed.

These tests turn the pool on in every node of the shared cluster and prove it: INFO's counters
show that no verification was offloaded, and a revoked token's KCHECK queued behind a backlog
of verifications while its revocation is MIGRATEd away answers 0."""

from __future__ import annotations

import itertools
import socket
import time

import jwt
import pytest

from conftest import REPO, subs_in_slot, slot_of, wait_until
from jwtdeny_keys import keys_for, kcheck, krevokeall, subject_key

ES384_KEY = (REPO / "tests/vectors/private/shared-es384.pem").read_bytes()
FAR_EXP = 4102444800
FILLERS = 400  # ES384 verifications: ~100 ms of backlog for two workers


def mint_es384(sub: str, iat: int) -> str:
    """ES384, the slowest of the vectors' algorithms, so never a cheap inline HMAC."""
    return jwt.encode({"sub": sub, "iat": iat, "exp": FAR_EXP}, ES384_KEY, algorithm="ES384",
                      headers={"kid": "shared-es384"})


def verifications(node) -> tuple[int, int]:
    """CHECK verifications on this node so far: (by a worker, inline)."""
    info = node.client().info("jwtdeny")
    return info["jwtdeny_verifications_offloaded"], info["jwtdeny_verifications_inline"]


def _resp(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Raw:
    """A bare connection to one node, to leave a command in flight and read its one-line reply
    later (redis-py waits for every reply)."""

    def __init__(self, node):
        self.sock = socket.create_connection(("127.0.0.1", node.port), timeout=30)
        self.file = self.sock.makefile("rb")

    def send(self, *args):
        self.sock.sendall(_resp(*args))

    def read(self) -> str:
        line = self.file.readline()
        assert line.endswith(b"\r\n"), line
        return line[:-2].decode()

    def close(self):
        self.file.close()
        self.sock.close()


@pytest.fixture
def pooled(cluster):
    """The shared cluster with two workers on every node, back to none afterwards."""
    for n in cluster.live():
        n.client().config_set("jwtdeny.workers", 2)
    try:
        yield cluster
    finally:
        for n in cluster.live():
            n.client().config_set("jwtdeny.workers", 0)


def test_with_workers_every_check_in_a_cluster_is_verified_inline(pooled):
    cluster = pooled
    rc = cluster.rc()
    now = int(time.time())
    revoked_sub = "pool-revoked"
    assert krevokeall(rc, revoked_sub, at=now - 5) == now - 5
    fresh = [mint_es384(f"pool-{i}", now - 10) for i in range(30)]
    revoked = [mint_es384(revoked_sub, now - 10 - i) for i in range(5)]
    masters = cluster.masters()
    before = {m.port: verifications(m) for m in masters}
    assert [kcheck(rc, t) for t in fresh + revoked] == [1] * len(fresh) + [0] * len(revoked)
    after = {m.port: verifications(m) for m in masters}
    offloaded = sum(after[p][0] - before[p][0] for p in before)
    inline = sum(after[p][1] - before[p][1] for p in before)
    assert (offloaded, inline) == (0, len(fresh + revoked)), (before, after)


def test_a_check_racing_the_migration_of_its_revocation_never_answers_1(pooled):
    """KCHECK of a revoked, never-seen token, sent while the node has a backlog of
    verifications, then its slot set MIGRATING and the revocation MIGRATEd to another master
    before that backlog could drain. A CHECK that left its lookup to a worker's reply callback
    would look after the key had gone and answer 1."""
    cluster = pooled
    rc = cluster.rc()
    now = int(time.time())
    shards = cluster.shards()
    src, _, slots = shards[0]
    tgt = shards[1][0]
    slot = min(slots)
    (sub,) = subs_in_slot(slot, 1, "raced")
    # Revoked by a cutoff, so the token itself was never verified (nor cached) anywhere.
    assert krevokeall(rc, sub, at=now - 5) == now - 5
    token = mint_es384(sub, now - 10)
    # Other subjects the same node serves, in slots that stay where they are.
    others = slots - {slot}
    candidates = (f"filler-{i}" for i in itertools.count())
    filler_subs = itertools.islice((f for f in candidates if slot_of(subject_key(f)) in others),
                                   FILLERS)
    fillers = [mint_es384(f, now - 10) for f in filler_subs]

    s = src.client()
    before = verifications(src)
    raced = Raw(src)
    raced.send("CLIENT", "ID")
    raced_id = int(raced.read()[1:])
    conns = [Raw(src) for _ in fillers]
    try:
        for c, t in zip(conns, fillers):
            c.send("JWTDENY.KCHECK", *keys_for(t), t)

        def processed(*ids) -> int:
            args = ["CLIENT", "LIST"] + (["ID", *ids] if ids else [])
            listing = s.execute_command(*args)
            if isinstance(listing, bytes):
                listing = listing.decode()
            return sum(" cmd=jwtdeny.kcheck " in f" {line} " for line in listing.splitlines())

        wait_until("the fillers to reach the source", lambda: processed() >= FILLERS, 30)
        raced.send("JWTDENY.KCHECK", *keys_for(token), token)
        wait_until("the raced KCHECK to reach the source", lambda: processed(raced_id) == 1, 30)
        src_id, tgt_id = src.node_id(), tgt.node_id()
        assert tgt.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        assert s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", tgt_id)
        moved = s.execute_command("MIGRATE", "127.0.0.1", tgt.port, "", 0, 5000,
                                  "KEYS", subject_key(sub))
        assert moved in (b"OK", "OK")
        for m in [tgt, src] + [m for m, _, _ in shards if m not in (src, tgt)]:
            assert m.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", tgt_id)
        assert raced.read() == ":0", "a revoked token answered while its revocation moved away"
        assert [c.read() for c in conns] == [":1"] * FILLERS
    finally:
        for c in conns + [raced]:
            c.close()
    after = verifications(src)
    assert (after[0] - before[0], after[1] - before[1]) == (0, FILLERS + 1), (before, after)
    cluster.wait_healthy(20)
    assert kcheck(cluster.rc(), token) == 0  # the revocation is found where it went
