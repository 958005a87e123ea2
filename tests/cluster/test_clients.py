"""Revocations made through any node and any client (redis-py RedisCluster, redis-cli -c,
node-redis createCluster) are seen by KCHECK through every node and every client; KREVOKEALL
works across the cluster."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from conftest import HERE, mint, slot_of, wait_replicated
from jwtdeny_keys import keys_for, kcheck, kinspect, krevoke, krevokeall, subject_key

N_SUBS = 45  # 15 per client: enough that every master owns some of each client's subjects


def kcheck_cmd(token):
    return ["JWTDENY.KCHECK", *keys_for(token), token]


@pytest.fixture(scope="module")
def world(cluster, tmp_path_factory):
    """Every client revokes its share; node-redis runs its own assertions on the way."""
    rc = cluster.rc()
    now = int(time.time())
    subs = [f"user-{i}@example.com" for i in range(N_SUBS)]
    old = {s: mint(s, iat=now - 600) for s in subs}  # the ones that get revoked
    new = {s: mint(s, iat=now - 300) for s in subs}  # same subjects, never revoked
    w = {"subs": subs, "old": old, "new": new, "now": now}

    # redis-py RedisCluster: the first third.
    w["by_py"] = [old[s] for s in subs[0::3]]
    for t in w["by_py"]:
        assert krevoke(rc, t) == 1
    # redis-cli -c: the second third, each through the next node (masters and replicas alike:
    # a replica answers a write with MOVED, which redis-cli -c follows).
    w["by_cli"] = [old[s] for s in subs[1::3]]
    for i, t in enumerate(w["by_cli"]):
        node = cluster.nodes[i % len(cluster.nodes)]
        assert cluster.cli(node, "JWTDENY.KREVOKE", *keys_for(t), t).splitlines()[-1] == "1"
    # node-redis: the last third (revoked inside node/cluster.test.js).
    w["by_node"] = [old[s] for s in subs[2::3]]

    # KREVOKEALL through each client: tokens at now-300/-200 are before the cutoff, -100 after.
    cut = now - 150
    ra = {}
    for name in ("py", "cli", "node"):
        sub = f"revokeall-{name}"
        ra[name] = {"sub": sub, "at": cut,
                    "before": [mint(sub, iat=now - 300), mint(sub, iat=now - 200), mint(sub, iat=cut)],
                    "after": [mint(sub, iat=now - 100), mint(sub, iat=cut + 1)]}
    assert krevokeall(rc, ra["py"]["sub"], at=cut) == cut
    sk = subject_key(ra["cli"]["sub"])
    non_owner = next(n for n in cluster.nodes if n is not cluster.owner(slot_of(sk)))
    assert cluster.cli(non_owner, "JWTDENY.KREVOKEALL", sk, ra["cli"]["sub"], "AT", cut).splitlines()[-1] == str(cut)
    w["revokeall"] = ra

    wait_replicated(cluster)
    scenario = {
        "rootNode": cluster.nodes[3].addr,  # a replica: discovery starts anywhere
        "ports": [n.port for n in cluster.nodes],
        "revokedElsewhere": w["by_py"] + w["by_cli"],
        "active": [new[s] for s in subs],
        "toRevoke": w["by_node"],
        "revokeAll": ra["node"],
        "seenRevokeAll": {"before": ra["py"]["before"] + ra["cli"]["before"],
                          "after": ra["py"]["after"] + ra["cli"]["after"]},
    }
    path = tmp_path_factory.mktemp("node") / "scenario.json"
    path.write_text(json.dumps(scenario))
    w["node_run"] = subprocess.run(
        ["node", "--test", "--test-reporter=spec", "cluster.test.js"], cwd=HERE / "node",
        env={**os.environ, "JWTDENY_SCENARIO": str(path), "NO_COLOR": "1"},
        capture_output=True, text=True, timeout=120)
    wait_replicated(cluster)
    w["revoked"] = w["by_py"] + w["by_cli"] + w["by_node"]
    w["active"] = [new[s] for s in subs]
    w["ra_before"] = [t for r in ra.values() for t in r["before"]]
    w["ra_after"] = [t for r in ra.values() for t in r["after"]]
    return w


def test_subjects_spread_over_every_master(cluster, world):
    shards = cluster.shards()
    owner = lambda key: cluster.shard_of(slot_of(key), shards)[0].port  # noqa: E731
    owners = {owner(subject_key(s)) for s in world["subs"]}
    assert owners == {m.port for m, _, _ in shards} and len(owners) == 3
    for group in ("by_py", "by_cli", "by_node"):
        assert {owner(keys_for(t)[0]) for t in world[group]} == owners, group


def test_node_redis_createCluster(world):
    run = world["node_run"]
    print(run.stdout, run.stderr)
    assert run.returncode == 0, f"node --test failed:\n{run.stdout}\n{run.stderr}"
    assert "# fail 0" in run.stdout or "ℹ fail 0" in run.stdout


def test_redis_py_sees_every_revocation(cluster, world):
    rc = cluster.rc()
    for t in world["revoked"] + world["ra_before"]:
        assert kcheck(rc, t) == 0
    for t in world["active"] + world["ra_after"]:
        assert kcheck(rc, t) == 1
    for t in world["by_node"]:
        fields = kinspect(rc, t)
        info = dict(zip(fields[::2], fields[1::2]))
        assert info[b"status"] == b"revoked" and info[b"revoked_by"] == b"token"
    for t in world["ra_before"]:
        fields = kinspect(rc, t)
        assert dict(zip(fields[::2], fields[1::2]))[b"revoked_by"] == b"subject"


def test_redis_cli_through_every_node_sees_every_revocation(cluster, world):
    revoked = world["revoked"] + world["ra_before"]
    active = world["active"] + world["ra_after"]
    cmds = [kcheck_cmd(t) for t in revoked + active]
    want = ["0"] * len(revoked) + ["1"] * len(active)
    for node in cluster.nodes:
        assert cluster.cli_batch(node, cmds) == want, node


def test_each_revocation_is_on_its_masters_replica(cluster, world):
    """Reads straight from the replica (READONLY), no redirection."""
    shards = cluster.shards()
    conns = {}
    for _, (replica,), _ in shards:
        conns[replica.port] = r = replica.client(single_connection_client=True)
        r.execute_command("READONLY")
    for want, tokens in ((0, world["revoked"] + world["ra_before"]), (1, world["active"])):
        for t in tokens:
            _, (replica,) = cluster.shard_of(slot_of(keys_for(t)[0]), shards)
            assert conns[replica.port].execute_command(*kcheck_cmd(t)) == want


def test_revokeall_cutoff_only_moves_forward_and_shares_the_slot(cluster, world):
    rc = cluster.rc()
    for name, r in world["revokeall"].items():
        assert krevokeall(rc, r["sub"], at=r["at"] - 1000) == r["at"], name
        for t in r["before"] + r["after"]:
            assert slot_of(keys_for(t)[0]) == slot_of(subject_key(r["sub"]))
    # Without AT the cutoff is now: every token issued so far is revoked, new ones are not.
    r = world["revokeall"]["py"]
    now = krevokeall(rc, r["sub"])
    assert abs(now - time.time()) < 5
    for t in r["before"] + r["after"]:
        assert kcheck(rc, t) == 0
    assert kcheck(rc, mint(r["sub"], iat=now + 1)) == 1
