"""A master is killed (SIGKILL) and its replica promoted: every revocation acknowledged with
`WAIT 1 1000` (so it reached the replica) is still found, through every client and node; no
check answers 1 for a revoked token while the failover happens. Uses a cluster of its own."""

from __future__ import annotations

import collections
import random
import threading
import time

from redis.exceptions import RedisError

from conftest import mint, slot_of, wait_until
from jwtdeny_keys import keys_for, kcheck, krevoke, subject_key

N_SUBS = 60


def revoke_and_wait(rc, *command):
    """The revocation and WAIT on one connection (WAIT counts that connection's writes): a
    pipeline on the redis.Redis of the node that owns the key (the README's recipe)."""
    node = rc.get_node_from_key(command[1])
    pipe = node.redis_connection.pipeline(transaction=False)
    pipe.execute_command(*command)
    pipe.execute_command("WAIT", 1, 1000)
    return pipe.execute()


def test_failover_keeps_every_revocation(own_cluster):
    c = own_cluster
    now = int(time.time())
    shards = c.shards()
    subs = [f"failover-{i}" for i in range(N_SUBS)]
    revoked = [mint(s, iat=now - 600) for s in subs]
    active = [mint(s, iat=now - 300) for s in subs]
    cutoff_subs = [f"failover-all-{i}" for i in range(9)]
    by_cutoff = [mint(s, iat=now - 500) for s in cutoff_subs]
    after_cutoff = [mint(s, iat=now - 100) for s in cutoff_subs]

    rc0 = c.rc()
    for t in revoked:
        entry, subject = keys_for(t)
        assert revoke_and_wait(rc0, "JWTDENY.KREVOKE", entry, subject, t) == [1, 1]
    for s in cutoff_subs:
        key = subject_key(s)
        assert revoke_and_wait(rc0, "JWTDENY.KREVOKEALL", key, s, "AT", now - 400) == [now - 400, 1]

    # The victim: the master holding the most of these revocations.
    per_master = collections.Counter(
        c.shard_of(slot_of(keys_for(t)[0]), shards)[0].port for t in revoked + by_cutoff)
    victim = c.by_port(per_master.most_common(1)[0][0])
    victim_slots = next(sl for m, _, sl in shards if m is victim)
    (heir,) = next(r for m, r, _ in shards if m is victim)
    on_victim = [t for t in revoked + by_cutoff if slot_of(keys_for(t)[0]) in victim_slots]
    assert len(on_victim) >= 10

    rc_before = c.rc()  # a client that knew the old topology
    assert all(kcheck(rc_before, t) == 0 for t in on_victim)

    # Keep checking revoked tokens on the victim's slots while it dies and is replaced.
    stop = threading.Event()
    seen = collections.Counter()
    wrong = []

    def checker():
        rc = c.rc()
        rng = random.Random(3)
        while not stop.is_set():
            t = rng.choice(on_victim)
            try:
                r = kcheck(rc, t)
            except (RedisError, OSError) as e:
                r = type(e).__name__
                time.sleep(0.05)
            seen[r] += 1
            if r == 1:
                wrong.append(keys_for(t)[0])

    th = threading.Thread(target=checker, daemon=True)
    th.start()
    try:
        time.sleep(0.2)
        t_kill = time.monotonic()
        c.kill(victim)

        def promoted():
            topo = c.topology(heir)
            me = next(v for v in topo.values() if v["port"] == heir.port)
            return me["role"] == "master" and me["slots"] == victim_slots

        wait_until("the replica to be promoted", promoted, 30)
        t_promoted = time.monotonic()
        c.wait_healthy(30)
        t_healthy = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        th.join(timeout=30)
    print(f"\nkilled master {victim.port}; replica {heir.port} promoted after "
          f"{t_promoted - t_kill:.2f}s, cluster ok everywhere after {t_healthy - t_kill:.2f}s")
    print("KCHECK outcomes on the victim's slots during the failover:", dict(seen))
    assert wrong == []
    assert seen[0] > 0

    # Every revocation is found: the new client, the one from before, redis-cli -c through
    # every live node, and the new master directly.
    rc = c.rc()
    for t in revoked + by_cutoff:
        assert kcheck(rc, t) == 0, keys_for(t)[0]
    for t in active + after_cutoff:
        assert kcheck(rc, t) == 1, keys_for(t)[0]
    wait_until("the old client to find the new master",
               lambda: kcheck(rc_before, on_victim[0]) == 0, 20)
    assert all(kcheck(rc_before, t) == 0 for t in on_victim)
    cmds = [["JWTDENY.KCHECK", *keys_for(t), t] for t in revoked + by_cutoff + active]
    want = ["0"] * len(revoked + by_cutoff) + ["1"] * len(active)
    for node in c.live():
        assert c.cli_batch(node, cmds) == want, node
    h = heir.client()
    for t in on_victim:
        assert h.execute_command("JWTDENY.KCHECK", *keys_for(t), t) == 0

    # The promoted master takes new revocations.
    sub = next(f"failover-new-{i}" for i in range(10_000)
               if slot_of(subject_key(f"failover-new-{i}")) in victim_slots)
    fresh = mint(sub, iat=now - 10)
    assert krevoke(rc, fresh) == 1
    assert kcheck(rc, fresh) == 0
    assert c.cli(c.live()[0], "JWTDENY.KCHECK", *keys_for(fresh), fresh).splitlines()[-1] == "0"
