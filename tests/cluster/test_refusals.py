"""In cluster mode the standalone forms never answer 0/1 (they name the keyed form instead),
and a keyed form whose declared keys are not the token's own is refused."""

from __future__ import annotations

import time

import pytest
import redis
from redis.exceptions import RedisClusterException, ResponseError

from conftest import mint, slot_of, subs_in_slot
from jwtdeny_keys import keys_for, kcheck, krevoke, subject_key


def keyed_form_error(command: str, *keys: str) -> str:
    quoted = " ".join(f"'{k}'" for k in keys)
    return (f"in Redis Cluster use the keyed form JWTDENY.K{command} {quoted} ... "
            "so the command reaches the node that holds its keys")


@pytest.fixture(scope="module")
def tokens(cluster):
    rc = cluster.rc()
    now = int(time.time())
    revoked = mint("refusals-revoked", iat=now - 100)
    active = mint("refusals-active", iat=now - 100)
    assert krevoke(rc, revoked) == 1
    return {"revoked": revoked, "active": active}


def reply(client, *args):
    try:
        return client.execute_command(*args)
    except ResponseError as e:
        return e


@pytest.mark.parametrize("which", ["revoked", "active"])
def test_standalone_forms_on_every_node_name_the_keyed_form(cluster, tokens, which):
    t = tokens[which]
    entry, subject = keys_for(t)
    sub = "refusals-" + which
    replicas = {r.port for _, reps, _ in cluster.shards() for r in reps}
    read_only = "You can't write against a read only replica."
    for node in cluster.nodes:  # masters (the owner among them) and replicas
        c = node.client()
        for cmd, args in (("CHECK", [t]), ("CHECK", [t, "WITHCLAIMS"]), ("REVOKE", [t]),
                          ("INSPECT", [t])):
            r = reply(c, f"JWTDENY.{cmd}", *args)
            assert isinstance(r, ResponseError), (node, cmd, r)
            if cmd == "REVOKE" and node.port in replicas:
                assert str(r) == read_only  # Redis refuses a write there before jwtdeny runs
            else:
                assert str(r) == keyed_form_error(cmd, entry, subject), (node, cmd)
        r = reply(c, "JWTDENY.REVOKEALL", sub, "AT", 1)
        want = read_only if node.port in replicas else keyed_form_error("REVOKEALL", subject)
        assert str(r) == want, node
    # Nothing was written by the refused REVOKE / REVOKEALL.
    rc = cluster.rc()
    assert kcheck(rc, t) == (0 if which == "revoked" else 1)
    assert rc.exists(subject) == 0


def test_standalone_check_of_an_invalid_token_gets_its_token_error(cluster, tokens):
    t = tokens["active"]
    forged = t[: t.rindex(".") + 1] + "A" * 43
    for node in cluster.nodes:
        assert str(reply(node.client(), "JWTDENY.CHECK", forged)).startswith("BADSIG ")
        assert str(reply(node.client(), "JWTDENY.CHECK", "not-a-token")).startswith("MALFORMED ")


def test_redis_cli_c_standalone_check_is_an_error(cluster, tokens):
    t = tokens["revoked"]
    entry, subject = keys_for(t)
    for node in cluster.nodes:
        out = cluster.cli(node, "JWTDENY.CHECK", t)
        assert out == "ERR " + keyed_form_error("CHECK", entry, subject)


def test_redis_py_cluster_cannot_dispatch_the_keyless_form(cluster, tokens):
    rc = cluster.rc()
    with pytest.raises(RedisClusterException, match="No way to dispatch"):
        rc.execute_command("JWTDENY.CHECK", tokens["revoked"])


def test_keyed_forms_declare_their_keys(cluster):
    entry, subject = "jwtdeny:{a}:1", "jwtdeny:{a}"
    c = cluster.nodes[0].client(decode_responses=True)
    assert c.command_getkeys("JWTDENY.KCHECK", entry, subject, "t") == [entry, subject]
    assert c.command_getkeys("JWTDENY.KREVOKE", entry, subject, "t") == [entry, subject]
    assert c.command_getkeys("JWTDENY.KINSPECT", entry, subject, "t") == [entry, subject]
    assert c.command_getkeys("JWTDENY.KREVOKEALL", subject, "a") == [subject]


def test_wrong_declared_keys_are_refused(cluster, tokens):
    rc = cluster.rc()
    t = tokens["active"]
    entry, subject = keys_for(t)
    # Same slot (same hash tag), wrong iat: the module refuses it.
    wrong_entry = entry.rsplit(":", 1)[0] + ":1"
    with pytest.raises(ResponseError) as e:
        rc.execute_command("JWTDENY.KREVOKE", wrong_entry, subject, t)
    assert str(e.value) == f"key '{wrong_entry}' does not match the derived key '{entry}'"
    with pytest.raises(ResponseError, match="does not match the derived key"):
        rc.execute_command("JWTDENY.KCHECK", wrong_entry, subject, t)
    # Another subject's keys in the very same slot: the module refuses them too, and nothing
    # is written under the victim's key.
    slot = slot_of(subject)
    (victim,) = subs_in_slot(slot, 1, "victim")
    victim_token = mint(victim, iat=int(time.time()) - 50)
    v_entry, v_subject = keys_for(victim_token)
    for cmd in ("JWTDENY.KREVOKE", "JWTDENY.KCHECK", "JWTDENY.KINSPECT"):
        with pytest.raises(ResponseError, match="does not match the derived key"):
            rc.execute_command(cmd, v_entry, v_subject, t)
    with pytest.raises(ResponseError, match="does not match the derived key"):
        rc.execute_command("JWTDENY.KREVOKEALL", v_subject, "refusals-active")
    assert rc.exists(v_entry, v_subject) == 0
    assert kcheck(rc, victim_token) == 1
    assert kcheck(rc, t) == 1
    # The right entry with another subject's cutoff key: refused too.
    with pytest.raises(ResponseError, match="does not match the derived key"):
        rc.execute_command("JWTDENY.KCHECK", entry, v_subject, t)


def test_keys_in_two_slots_are_refused_by_redis(cluster, tokens):
    t = tokens["active"]
    entry, _ = keys_for(t)
    other = subject_key("someone-else")
    assert slot_of(other) != slot_of(entry)
    owner = cluster.owner(slot_of(entry))
    r = reply(owner.client(), "JWTDENY.KCHECK", entry, other, t)
    assert str(r).startswith("Keys in request don't hash to the same slot"), r


def test_token_errors_come_before_key_checks(cluster, tokens):
    t = tokens["active"]
    forged = t[: t.rindex(".") + 1] + "A" * 43
    entry, subject = keys_for(t)
    owner = cluster.owner(slot_of(entry))
    r = reply(owner.client(), "JWTDENY.KCHECK", entry + "x", subject, forged)
    assert str(r).startswith("BADSIG "), r
    expired = mint("refusals-active", iat=1, exp=2)
    e2, s2 = keys_for(expired)
    r = reply(cluster.owner(slot_of(e2)).client(), "JWTDENY.KCHECK", e2, s2, expired)
    assert str(r).startswith("EXPIRED "), r


def test_a_keyed_command_sent_to_the_wrong_node_is_redirected_not_answered(cluster, tokens):
    t = tokens["revoked"]
    entry, subject = keys_for(t)
    slot = slot_of(entry)
    owner = cluster.owner(slot)
    for node in cluster.nodes:
        if node is owner:
            continue
        r = reply(node.client(), "JWTDENY.KCHECK", entry, subject, t)
        assert isinstance(r, redis.exceptions.MovedError) or str(r).startswith(f"{slot} "), (node, r)
    assert owner.client().execute_command("JWTDENY.KCHECK", entry, subject, t) == 0
