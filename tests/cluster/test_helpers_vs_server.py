"""The client helpers (clients/python, clients/node) derive exactly the keys the server derives:
every key the helpers compute for a signed token is accepted by KCHECK (the server refuses a
declared key that differs from its own), for awkward subjects and NumericDate spellings."""

from __future__ import annotations

import json
import random
import subprocess

import pytest

from conftest import REPO, FAR_EXP, mint_raw
from jwtdeny_keys import keys_for

CASES = json.loads((REPO / "clients/testdata/key-cases.json").read_text(encoding="utf-8"))["cases"]


def with_exp(payload: str) -> str:
    """The case's payload with an exp, so the server accepts the token."""
    if '"exp"' in payload or "{" not in payload:
        return payload
    i = payload.index("{")
    return payload[: i + 1] + f'"exp":{FAR_EXP},' + payload[i + 1 :]


def boundary_iats(n: int = 120) -> list[str]:
    """NumericDate spellings close to a whole second: where a float parser that is off by one
    unit in the last place would floor to the second before."""
    rng = random.Random(6)
    # 1053784603 - 5e-12: correctly rounded it is the double 1053784603.0 (Python, JavaScript);
    # a best-effort parser lands one unit lower, 1053784602.9999999, and floors to ...602.
    out = ["1053784602.999999999995", "1767225599.99999999999"]
    for _ in range(n):
        base = rng.randrange(1_000_000_000, 4_000_000_000)
        k = rng.randrange(5, 22)
        out += [f"{base}.{'9' * k}", f"{base - 1}.{'9' * k}5", f"{base}.{'0' * k}1",
                f"{base}{'9' * (k % 6)}.{'9' * k}e-{k % 6}", f"{base}.5e0"]
    return out


def js_keys(tokens: list[str]) -> list:
    script = (
        "const jk = require(process.argv[1]);"
        "const ts = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(ts.map((t) => { try { const k = jk.keysFor(t);"
        " return [k.entry, k.subject]; } catch (e) { return null; } })));"
    )
    out = subprocess.run(["node", "-e", script, str(REPO / "clients/node/jwtdeny-keys.js")],
                         input=json.dumps(tokens), capture_output=True, text=True, check=True,
                         timeout=60)
    return json.loads(out.stdout)


def case_tokens():
    ok = [c for c in CASES if not c.get("error")]
    return [(c.get("note") or c["payload"], mint_raw(with_exp(c["payload"])), c) for c in ok]


def boundary_tokens():
    return [(f"iat {s}", mint_raw(f'{{"sub":"boundary","iat":{s},"exp":{FAR_EXP}}}'), None)
            for s in boundary_iats()]


def server_refusals(rc, tokens, keys):
    """The tokens whose KCHECK with these keys does not answer 1, with the server's reply."""
    pipe = rc.pipeline()  # cluster pipeline: grouped per node, each command routed by its key
    for (_, t, _), (entry, subject) in zip(tokens, keys):
        pipe.execute_command("JWTDENY.KCHECK", entry, subject, t)
    replies = pipe.execute(raise_on_error=False)
    return [(name, k, str(r)) for (name, _, _), k, r in zip(tokens, keys, replies) if r != 1]


SETS = {"shared key cases": case_tokens, "NumericDates next to a whole second": boundary_tokens}


@pytest.mark.parametrize("which", list(SETS))
def test_python_helper_keys_are_the_servers(cluster, which):
    tokens = SETS[which]()
    keys = [keys_for(t) for _, t, _ in tokens]
    for (name, _, case), k in zip(tokens, keys):
        if case:
            assert k == (case["entry"], case["subject"]), name
    assert server_refusals(cluster.rc(), tokens, keys) == []


@pytest.mark.parametrize("which", list(SETS))
def test_node_helper_keys_are_the_servers(cluster, which):
    tokens = SETS[which]()
    keys = [tuple(k) for k in js_keys([t for _, t, _ in tokens])]
    assert keys == [keys_for(t) for _, t, _ in tokens]
    assert server_refusals(cluster.rc(), tokens, keys) == []


def test_tokens_the_helpers_refuse_are_refused_by_the_server(cluster):
    """An error case the helpers throw on is one the server answers with a token error, so a
    client that skips such a token loses nothing."""
    node = cluster.masters()[0].client()
    for c in CASES:
        if c.get("error") is not True:
            continue
        t = mint_raw(with_exp(c["payload"]))
        with pytest.raises(ValueError):
            keys_for(t)
        try:
            r = node.execute_command("JWTDENY.CHECK", t)
        except Exception as e:  # noqa: BLE001
            r = str(e)
        assert isinstance(r, str) and r.split()[0] in ("MALFORMED", "BADCLAIMS"), (c["note"], r)
