"""Unit tests of jwtdeny_keys (stdlib + pytest): `pytest clients/python`."""

import base64
import json
import pathlib

import pytest

import jwtdeny_keys as jk

ROOT = pathlib.Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests/vectors/vectors.json").read_text())["vectors"]
KEY_CASES = json.loads((ROOT / "clients/testdata/key-cases.json").read_text(encoding="utf-8"))
CASES = KEY_CASES["cases"]
LOGOUT_CASES = KEY_CASES["logout_cases"]
LOGOUT_VECTORS = json.loads((ROOT / "tests/vectors/logout.json").read_text())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_with(payload: str) -> str:
    """An (unsigned) token with this exact payload text: the helpers never verify."""
    header = b64(b'{"alg":"HS256"}')
    return f"{header}.{b64(payload.encode())}.{b64(b'sig')}"


ACTIVE = [v for v in VECTORS if v["expect"] == "active"]


@pytest.mark.parametrize("v", ACTIVE, ids=[v["name"] for v in ACTIVE])
def test_active_vectors_give_the_documented_keys(v):
    entry, subject = jk.keys_for(v["token"])
    assert entry == f"jwtdeny:{{{v['sub']}}}:{v['iat']}"
    assert subject == f"jwtdeny:{{{v['sub']}}}"
    assert jk.subject_key(v["sub"]) == subject
    assert jk.keys_for(v["token"].encode()) == (entry, subject)


def test_iat_float_and_exponent_vectors_are_whole_seconds():
    by_name = {v["name"]: v for v in VECTORS}
    for name in ("iat-float", "iat-exponent"):
        assert jk.keys_for(by_name[name]["token"]) == ("jwtdeny:{carol}:1767225800", "jwtdeny:{carol}")


@pytest.mark.parametrize("case", CASES, ids=[c.get("note") or c["payload"] for c in CASES])
def test_shared_key_cases(case):
    token = token_with(case["payload"])
    if case.get("error") is True:
        with pytest.raises(ValueError):
            jk.keys_for(token)
    elif case.get("error") == "may":
        try:
            jk.keys_for(token)
        except ValueError:
            pass
    else:
        assert jk.keys_for(token) == (case["entry"], case["subject"])
        assert jk.session_key_for(token) == case.get("session")


@pytest.mark.parametrize("case", LOGOUT_CASES, ids=[c.get("note") or c["payload"] for c in LOGOUT_CASES])
def test_shared_logout_cases(case):
    token = token_with(case["payload"])
    if case.get("error"):
        with pytest.raises(ValueError):
            jk.logout_keys_for(token)
    else:
        assert jk.logout_keys_for(token) == (case["subject"], case["session"])


def test_logout_vectors_give_the_keys_of_what_they_end():
    for v in LOGOUT_VECTORS["logout"]:
        if v["expect"] != "ok":
            continue
        sub, sid = v["revokes"]["sub"], v["revokes"]["sid"]
        subject = f"jwtdeny:{{{sub}}}"
        session = subject if sid is None else f"{subject}:sid:{sid}"
        assert jk.logout_keys_for(v["token"]) == (subject, session), v["name"]
    by_name = {v["name"]: v for v in LOGOUT_VECTORS["access"]}
    assert jk.session_key_for(by_name["alice-sess-1"]["token"]) == "jwtdeny:{alice}:sid:sess-1"
    assert jk.session_key_for(by_name["alice-no-sid"]["token"]) is None


def test_session_helpers_refuse_what_the_server_refuses():
    with pytest.raises(ValueError):
        jk.session_key_for(token_with('{"sub":"a","iat":5,"sid":"\\udc00"}'))
    with pytest.raises(ValueError):
        jk.session_key_for(token_with('{"sub":"a","iat":5,"sid":"x","sid":"y"}'))
    for bad in ["", None, 5]:
        with pytest.raises(ValueError):
            jk.session_key("a", bad)
    assert jk.session_key("a{b", "s", prefix="p:") == "p:{a%7Bb}:sid:s"


def test_prefix():
    token = token_with('{"sub":"a{b","iat":7}')
    assert jk.keys_for(token, prefix="p:") == ("p:{a%7Bb}:7", "p:{a%7Bb}")
    assert jk.subject_key("a{b", prefix="p:") == "p:{a%7Bb}"
    assert jk.subject_key("a{b") == "jwtdeny:{a%7Bb}"


def test_the_hash_tag_is_the_whole_encoded_subject():
    for sub in ["}", "{", "a}b", "{x}", "%", "}{", "{}", "a:b", "{a}:1"]:
        entry, subject = jk.keys_for(token_with(json.dumps({"sub": sub, "iat": 1})))
        open_ = entry.index("{")
        close = entry.index("}", open_ + 1)
        assert entry[open_ + 1 : close] == jk.encode_subject(sub)
        assert entry.startswith(subject)
        # percent-decoding the tag gives the subject back: the encoding is injective
        tag = entry[open_ + 1 : close]
        assert tag.replace("%7B", "{").replace("%7D", "}").replace("%25", "%") == sub


@pytest.mark.parametrize(
    "token",
    ["", "a.b", "a.b.c.d", "x.!!!.y", "x.a.y", "x.YQ==.y", "x. eyJ9.y", None, 5],
)
def test_tokens_that_cannot_be_jwts_are_refused(token):
    with pytest.raises((ValueError, TypeError)):
        jk.keys_for(token)


def test_subject_key_refuses_empty_or_non_string():
    for bad in ["", None, 5]:
        with pytest.raises(ValueError):
            jk.subject_key(bad)


class Recorder:
    def __init__(self):
        self.calls = []

    def execute_command(self, *args):
        self.calls.append(args)
        return 1


def test_wrappers_send_the_documented_commands():
    v = ACTIVE[0]
    t = v["token"]
    e, s = f"jwtdeny:{{{v['sub']}}}:{v['iat']}", f"jwtdeny:{{{v['sub']}}}"
    r = Recorder()
    jk.kcheck(r, t)
    jk.kcheck(r, t, withclaims=True)
    jk.krevoke(r, t)
    jk.kinspect(r, t)
    jk.krevokeall(r, v["sub"])
    jk.krevokeall(r, v["sub"], at=1767225600)
    assert r.calls == [
        # A token without sid declares its subject's sid-less cutoff as the third key.
        ("JWTDENY.KSCHECK", e, s, s + ":nosid", t),
        ("JWTDENY.KSCHECK", e, s, s + ":nosid", t, "WITHCLAIMS"),
        ("JWTDENY.KREVOKE", e, s, t),
        ("JWTDENY.KSINSPECT", e, s, s + ":nosid", t),
        ("JWTDENY.KREVOKEALL", s, v["sub"]),
        ("JWTDENY.KREVOKEALL", s, v["sub"], "AT", 1767225600),
    ]


def test_wrappers_declare_the_session_of_a_token_that_has_one():
    t = token_with('{"sub":"alice","iat":5,"sid":"s-1"}')
    e, s, ss = "jwtdeny:{alice}:5", "jwtdeny:{alice}", "jwtdeny:{alice}:sid:s-1"
    lo_sid = token_with('{"sub":"alice","sid":"s-1","iat":5}')
    lo_sub = token_with('{"sub":"alice","iat":5}')
    r = Recorder()
    jk.kcheck(r, t)
    jk.kcheck(r, t, withclaims=True)
    jk.kinspect(r, t)
    jk.krevoke(r, t)
    jk.klogout(r, lo_sid)
    jk.klogout(r, lo_sub)
    jk.krevokesession(r, "alice", "s-1")
    assert r.calls == [
        ("JWTDENY.KSCHECK", e, s, ss, t),
        ("JWTDENY.KSCHECK", e, s, ss, t, "WITHCLAIMS"),
        ("JWTDENY.KSINSPECT", e, s, ss, t),
        ("JWTDENY.KREVOKE", e, s, t),
        ("JWTDENY.KLOGOUT", s, ss, s + ":nosid", lo_sid),
        ("JWTDENY.KLOGOUT", s, s, s + ":nosid", lo_sub),
        ("JWTDENY.KREVOKESESSION", s, ss, s + ":nosid", "alice", "s-1"),
    ]
