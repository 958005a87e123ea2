"""Resharding the slot that holds a subject's revocations, by hand (CLUSTER SETSLOT
IMPORTING/MIGRATING, MIGRATE key by key with pauses, SETSLOT NODE on every master), while
clients keep checking revoked tokens: no check ever answers 1, and revocations issued
mid-migration are found afterwards.

While the slot moves, a two-key command (KCHECK, KREVOKE) whose keys are not both on one node
gets TRYAGAIN from Redis (redis-py retries it, then raises ClusterError "TTL exhausted"): it
fails closed. KREVOKEALL (one key) goes through, following ASK. The test prints what it saw."""

from __future__ import annotations

import collections
import random
import threading
import time

from redis.exceptions import ClusterError, RedisError, TryAgainError

from conftest import mint, slot_of, subs_in_slot, wait_for_progress, wait_replicated
from jwtdeny_keys import keys_for, kcheck, krevoke, krevokeall, subject_key

SUB = "resharded@example.com"
PAUSE = 0.03  # between two MIGRATEs: the migration lasts ~2 s


def outcome(fn, *args):
    try:
        return fn(*args)
    except (RedisError, OSError) as e:
        return type(e).__name__


class Checker(threading.Thread):
    """KCHECKs random revoked/active tokens in a loop through its own RedisCluster (which
    follows MOVED and ASK, and retries TRYAGAIN), recording every outcome."""

    def __init__(self, cluster, revoked, active):
        super().__init__(daemon=True)
        self.rc = cluster.rc()
        self.revoked, self.active = revoked, active
        self.stop = threading.Event()
        self.migrating = threading.Event()
        self.seen = collections.Counter()  # (kind, during_migration, outcome) -> count
        self.wrong = []

    def during(self) -> int:
        """Checks made while the slot was migrating, so far."""
        return sum(n for (_, during, _), n in list(self.seen.items()) if during)

    def run(self):
        rng = random.Random(1)
        while not self.stop.is_set():
            kind = "revoked" if rng.random() < 0.8 else "active"
            t = rng.choice(self.revoked if kind == "revoked" else self.active)
            during = self.migrating.is_set()
            r = outcome(kcheck, self.rc, t)
            self.seen[(kind, during, r)] += 1
            if (kind, r) in (("revoked", 1), ("active", 0)):
                self.wrong.append((kind, during, keys_for(t)[0], r))


def revoke_until_acknowledged(rc, token, log, deadline=20.0):
    """What an application does with a revocation that meets TRYAGAIN (redis-py gives up
    with ClusterError "TTL exhausted" after its own retries): retry until the server
    acknowledges it. Any other error is logged and ends the attempt."""
    end = time.monotonic() + deadline
    while True:
        try:
            log.append((time.monotonic(), "ok", krevoke(rc, token)))
            return
        except (TryAgainError, ClusterError) as e:
            log.append((time.monotonic(), "retry", type(e).__name__))
        except Exception as e:  # noqa: BLE001 - reported by the test's assertions
            log.append((time.monotonic(), "error", repr(e)))
            return
        if time.monotonic() > end:
            log.append((time.monotonic(), "error", "deadline"))
            return
        time.sleep(0.05)


def test_resharding_never_answers_1_for_a_revoked_token(cluster):
    rc = cluster.rc()
    now = int(time.time())
    slot = slot_of(subject_key(SUB))
    both, cutoff_only, never, late = subs_in_slot(slot, 4, "neighbour")

    # The slot holds three kinds of revocation: token entries only (SUB), a cutoff only
    # (cutoff_only), and both (both); and tokens nobody revoked (never).
    entries = [mint(SUB, iat=now - 2000 + i) for i in range(40)]
    for t in entries:
        assert krevoke(rc, t) == 1
    by_cutoff = [mint(cutoff_only, iat=now - 1000 + i) for i in range(5)]
    assert krevokeall(rc, cutoff_only, at=now - 900) == now - 900
    double = [mint(both, iat=now - 1000 + i) for i in range(5)]
    for t in double:
        assert krevoke(rc, t) == 1
    assert krevokeall(rc, both, at=now - 900) == now - 900
    revoked = entries + by_cutoff + double
    active = [mint(never, iat=now - 100 + i) for i in range(5)] + [mint(SUB, iat=now - 10)]
    mid_migration = [mint(SUB, iat=now - 500 + i) for i in range(3)] + [mint(never, iat=now - 500)]
    # KREVOKEALL declares one key, so Redis routes it through a migration without TRYAGAIN:
    # `late` has no cutoff yet (ASK to the target), cutoff_only's moves forward.
    late_tokens = [mint(late, iat=now - 300 + i) for i in range(3)]
    by_cutoff_later = [mint(cutoff_only, iat=now - 300 + i) for i in range(3)]
    assert all(slot_of(keys_for(t)[0]) == slot
               for t in revoked + active + mid_migration + late_tokens + by_cutoff_later)

    shards = cluster.shards()
    src, _ = cluster.shard_of(slot, shards)
    tgt = next(m for m, _, _ in shards if m is not src)
    src_id, tgt_id = src.node_id(), tgt.node_id()
    s, d = src.client(), tgt.client()
    keys = s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
    ours = {keys_for(t)[0].encode() for t in entries + double}
    ours |= {subject_key(cutoff_only).encode(), subject_key(both).encode()}
    assert ours <= set(keys)  # (other tests' keys may share the slot: they move too)

    checker = Checker(cluster, revoked, active)
    checker.start()
    revoke_log: list = []
    revokeall_mid: list = []
    revokers = []
    cli_mid = []
    try:
        time.sleep(0.3)  # some checks with the slot stable
        checker.migrating.set()
        assert d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        assert s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", tgt_id)
        t_start = time.monotonic()
        for i, k in enumerate(keys):
            assert s.execute_command("MIGRATE", "127.0.0.1", tgt.port, k, 0, 5000) in (b"OK", "OK")
            if i == len(keys) // 2:
                # Revocations issued mid-migration, each in its own thread with its own client.
                for t in mid_migration:
                    th = threading.Thread(target=revoke_until_acknowledged,
                                          args=(cluster.rc(), t, revoke_log), daemon=True)
                    th.start()
                    revokers.append(th)
                # KREVOKEALL mid-migration: answered at once (redis-py follows the ASK).
                revokeall_mid = [outcome(krevokeall, cluster.rc(), late, now - 200),
                                 outcome(krevokeall, cluster.rc(), cutoff_only, now - 200)]
                # redis-cli -c through some node, mid-migration.
                node = random.Random(2).choice(cluster.nodes)
                cli_mid = cluster.cli_batch(node, [["JWTDENY.KCHECK", *keys_for(t), t]
                                                   for t in revoked[::4]])
            # Let the checks see each state of the move, however slow the machine is.
            wait_for_progress(checker.during, checker.during(), PAUSE)
        assert s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10) == []
        t_moved = time.monotonic()
        for m in [tgt, src] + [m for m, _, _ in shards if m not in (src, tgt)]:
            assert m.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", tgt_id)
        t_end = time.monotonic()
        checker.migrating.clear()
        for th in revokers:
            th.join(timeout=30)
        time.sleep(0.5)  # some checks with the slot stable again
    finally:
        checker.stop.set()
        checker.join(timeout=30)

    summary = sorted(checker.seen.items(), key=str)
    print(f"\nmigration of slot {slot} ({len(keys)} keys) {src.port} -> {tgt.port}: "
          f"{t_moved - t_start:.2f}s moving keys, SETSLOT NODE done at +{t_end - t_start:.2f}s")
    print("KCHECK outcomes (kind, during migration, reply):", summary)
    print("redis-cli -c mid-migration replies:", collections.Counter(cli_mid))
    print("mid-migration KREVOKEALL replies:", revokeall_mid)
    print("mid-migration KREVOKE attempts:",
          [(round(t - t_start, 2), what, r) for t, what, r in revoke_log])

    # The promise: a revoked token never reads as active, an active one never as revoked.
    assert checker.wrong == []
    assert "1" not in cli_mid
    assert checker.during() >= min(10, len(keys))
    # Every mid-migration revocation was acknowledged (1) exactly once.
    acks = [r for _, what, r in revoke_log if what == "ok"]
    assert sorted(acks) == [1] * len(mid_migration)
    assert revokeall_mid == [now - 200, now - 200]
    revoked += late_tokens + by_cutoff_later

    # Afterwards: the slot is the target's on every node, and every revocation, old and new,
    # is found through every client and node.
    cluster.wait_healthy(20)  # every node agrees on the new owner
    assert cluster.shard_of(slot)[0] is tgt
    rc2 = cluster.rc()
    for t in revoked + mid_migration:
        assert kcheck(rc2, t) == 0
        assert kcheck(rc, t) == 0  # the client that saw the slot move
    for t in active:
        assert kcheck(rc2, t) == 1
    want = ["0"] * len(revoked + mid_migration)
    cmds = [["JWTDENY.KCHECK", *keys_for(t), t] for t in revoked + mid_migration]
    for node in cluster.nodes:
        assert cluster.cli_batch(node, cmds) == want, node
    # The target's replica has them too; the source kept nothing of the slot.
    wait_replicated(cluster)
    (replica,) = cluster.shard_of(slot)[1]
    r = replica.client(single_connection_client=True)
    r.execute_command("READONLY")
    for t in revoked + mid_migration:
        assert r.execute_command("JWTDENY.KCHECK", *keys_for(t), t) == 0
    assert s.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
