"""A real Redis Cluster on loopback ports with jwtdeny loaded on every node.

3 masters + 3 replicas, each its own redis-server process and data dir, created with
`redis-cli --cluster create ... --cluster-replicas 1`. Fixtures stop every server at the end,
on failure too. Environment:

  JWTDENY_MODULE        the module (default <repo>/target/release/libjwtdeny.so); it is copied
                        once per run so a rebuild during the run cannot mix versions
  JWTDENY_CLUSTER_PIDS  if set, a file each started server's pid is appended to (run.sh uses it
                        to stop leftovers if pytest itself is killed)
  JWTDENY_CLUSTER_DIR   where the servers' dirs go (default: the system temp dir)
  JWTDENY_KEEP_LOGS     if set, the servers' dirs (logs) are kept instead of removed
  JWTDENY_SERVER_BIN    the server to run (default redis-server; tests/valkey.sh gives
                        valkey-server for a part of this suite)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import jwt
import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "clients" / "python"))

import jwtdeny_keys  # noqa: E402

KEYS_FILE = REPO / "tests/vectors/jwks.json"
HS256_SECRET = (REPO / "tests/vectors/private/shared-hs256.key").read_bytes()
HS256_KID = "shared-hs256"
FAR_EXP = 4102444800  # 2100-01-01
NODE_TIMEOUT_MS = 1000


def wait_until(what: str, fn, timeout: float, interval: float = 0.05):
    """Polls fn until it returns a truthy value; fails the test with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_err = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except (redis.RedisError, OSError) as e:
            last_err = e
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last error: {last_err!r})")
        time.sleep(interval)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_cluster_port(taken: set[int]) -> int:
    """A port p with p and its cluster bus port p+10000 both free on 127.0.0.1."""
    for _ in range(1000):
        p = random.randrange(20000, 55000)
        if p in taken or p + 10000 in taken:
            continue
        if _port_free(p) and _port_free(p + 10000):
            taken.update((p, p + 10000))
            return p
    raise RuntimeError("no free port pair found")


class Node:
    def __init__(self, port: int, dir: pathlib.Path, proc: subprocess.Popen):
        self.port = port
        self.dir = dir
        self.proc = proc
        self.killed = False

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **kw) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10, **kw)

    def alive(self) -> bool:
        return not self.killed and self.proc.poll() is None

    def node_id(self) -> str:
        return self.client().execute_command("CLUSTER", "MYID").decode()

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = (self.dir / "redis.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def __repr__(self):
        return f"Node({self.port})"


class Cluster:
    """Starts 6 redis-servers in cluster mode and forms 3 masters + 3 replicas."""

    def __init__(self, module: pathlib.Path, base: pathlib.Path, name: str):
        self.module = module
        self.base = base / name
        self.base.mkdir(parents=True)
        self.nodes: list[Node] = []
        self._clients: list = []

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, masters: int = 3, replicas: int = 1, deadline: float = 60):
        taken: set[int] = set()
        for i in range(masters * (1 + replicas)):
            self.nodes.append(self._start_node(i, taken))
        for n in self.nodes:
            wait_until(f"{n} to answer PING", lambda n=n: n.client().ping(), 15)
        out = subprocess.run(
            ["redis-cli", "--cluster", "create", *[n.addr for n in self.nodes],
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )
        if out.returncode != 0 or "[OK] All 16384 slots covered" not in out.stdout:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{out.stdout}\n{out.stderr}")
        self.wait_healthy(deadline)
        return self

    def _start_node(self, i: int, taken: set[int]) -> Node:
        for attempt in range(5):
            port = free_cluster_port(taken)
            d = self.base / f"node-{i}-{port}"
            d.mkdir()
            cmd = [
                os.environ.get("JWTDENY_SERVER_BIN") or "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--save", "",
                "--appendonly", "no",
                # A replica's first sync starts at once instead of after the default 5 s.
                "--repl-diskless-sync-delay", "0",
                "--dir", str(d),
                "--logfile", str(d / "redis.log"),
                "--loadmodule", str(self.module), "keys-file", str(KEYS_FILE),
            ]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
            pidfile = os.environ.get("JWTDENY_CLUSTER_PIDS")
            if pidfile:
                with open(pidfile, "a") as f:
                    f.write(f"{proc.pid}\n")
            node = Node(port, d, proc)
            # A lost race for the port makes the server exit at once; try another port.
            for _ in range(100):
                if proc.poll() is not None:
                    break
                try:
                    if node.client().ping():
                        return node
                except (redis.ConnectionError, OSError):
                    time.sleep(0.05)
            if proc.poll() is None:
                return node
            tail = node.log_tail()
            if "Address already in use" not in tail:
                raise RuntimeError(f"redis-server on port {port} exited:\n{tail}")
        raise RuntimeError("could not start a redis-server after 5 attempts")

    def stop(self):
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        for n in self.nodes:
            if n.proc.poll() is None:
                n.proc.terminate()
        for n in self.nodes:
            try:
                n.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                n.proc.kill()
                n.proc.wait(timeout=10)

    def kill(self, node: Node):
        """SIGKILL: no shutdown, no goodbye to the cluster."""
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=10)
        node.killed = True

    # -- topology --------------------------------------------------------------------------

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.alive()]

    def by_port(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def topology(self, via: Node | None = None) -> dict:
        """{node_id: {"port", "role", "master_id", "slots": set, "flags"}} from CLUSTER NODES."""
        via = via or self.live()[0]
        text = via.client().execute_command("CLUSTER", "NODES")
        if isinstance(text, bytes):
            text = text.decode()
        out = {}
        for line in text.strip().splitlines():
            f = line.split()
            node_id, addr, flags, master = f[0], f[1], f[2].split(","), f[3]
            slots = set()
            for r in f[8:]:
                if r.startswith("["):
                    continue  # [slot->-id] / [slot-<-id]: a migration in progress
                a, _, b = r.partition("-")
                slots.update(range(int(a), int(b or a) + 1))
            out[node_id] = {
                "port": int(addr.split(":")[1].split("@")[0]),
                "role": "master" if "master" in flags else "replica",
                "master_id": None if master == "-" else master,
                "slots": slots,
                "flags": flags,
            }
        return out

    def shards(self) -> list[tuple[Node, list[Node], set[int]]]:
        """(master, its live replicas, its slots) for every master serving slots, from one
        CLUSTER NODES."""
        topo = self.topology()
        live = {n.port for n in self.live()}
        out = []
        for mid, v in topo.items():
            if v["role"] == "master" and v["slots"] and "fail" not in v["flags"]:
                reps = [self.by_port(r["port"]) for r in topo.values()
                        if r["master_id"] == mid and r["port"] in live and "fail" not in r["flags"]]
                out.append((self.by_port(v["port"]), reps, v["slots"]))
        return out

    def shard_of(self, slot: int, shards=None) -> tuple[Node, list[Node]]:
        for master, replicas, slots in shards or self.shards():
            if slot in slots:
                return master, replicas
        raise LookupError(f"no master owns slot {slot}")

    def masters(self) -> list[Node]:
        topo = self.topology()
        return [self.by_port(v["port"]) for v in topo.values()
                if v["role"] == "master" and v["slots"] and "fail" not in v["flags"]]

    def owner(self, slot: int) -> Node:
        for v in self.topology().values():
            if v["role"] == "master" and slot in v["slots"] and "fail" not in v["flags"]:
                return self.by_port(v["port"])
        raise LookupError(f"no master owns slot {slot}")

    def replicas_of(self, master: Node) -> list[Node]:
        topo = self.topology()
        mid = master.node_id()
        return [self.by_port(v["port"]) for v in topo.values()
                if v["master_id"] == mid and "fail" not in v["flags"]]

    def healthy(self) -> bool:
        live = self.live()
        for n in live:
            info = n.client().execute_command("CLUSTER", "INFO")
            if isinstance(info, bytes):
                info = info.decode()
            if "cluster_state:ok" not in info or "cluster_slots_assigned:16384" not in info:
                return False
        topo = self.topology(live[0])
        live_ports = {n.port for n in live}
        masters = [v for v in topo.values() if v["role"] == "master" and v["slots"]]
        if any("fail" in v["flags"] or "fail?" in v["flags"] for v in masters):
            return False
        # Every node agrees on who owns which slots.
        for n in live[1:]:
            other = self.topology(n)
            if {k: (v["role"], frozenset(v["slots"])) for k, v in other.items() if v["port"] in live_ports} != \
               {k: (v["role"], frozenset(v["slots"])) for k, v in topo.items() if v["port"] in live_ports}:
                return False
        # Every live replica has a working link to its master.
        for v in topo.values():
            if v["role"] == "replica" and v["port"] in live_ports:
                info = self.by_port(v["port"]).client().info("replication")
                if info.get("master_link_status") != "up":
                    return False
        return True

    def wait_healthy(self, timeout: float = 60):
        wait_until("cluster_state:ok, agreed slots and replica links up on every node",
                   self.healthy, timeout, interval=0.1)

    # -- clients ---------------------------------------------------------------------------

    def rc(self, **kw) -> RedisCluster:
        """A redis-py RedisCluster that knows only one live node and discovers the rest."""
        seed = self.live()[0]
        c = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", seed.port)],
                         socket_timeout=10, **kw)
        self._clients.append(c)
        return c

    def cli(self, node: Node, *args, cluster_mode: bool = True) -> str:
        """redis-cli [-c] -p <port> args...: its output (stdout), stripped."""
        cmd = ["redis-cli", *(["-c"] if cluster_mode else []), "-p", str(node.port), *map(str, args)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout + out.stderr).strip()

    def cli_batch(self, node: Node, commands: list[list]) -> list[str]:
        """Many commands through one `redis-cli -c -p <port>` reading stdin: one reply line
        each (single-line, non-empty replies only; redis-cli follows an error reply with an
        empty line), the "-> Redirected to ..." notes dropped."""
        text = "".join(" ".join(_cli_quote(str(a)) for a in cmd) + "\n" for cmd in commands)
        out = subprocess.run(["redis-cli", "-c", "-p", str(node.port)], input=text,
                             capture_output=True, text=True, timeout=60)
        lines = [l for l in out.stdout.splitlines() if l and not l.startswith("-> Redirected to")]
        assert len(lines) == len(commands), (out.stdout, out.stderr)
        return lines


def _cli_quote(arg: str) -> str:
    """Quotes an argument the way redis-cli's stdin parser (sdssplitargs) reads it."""
    out = []
    for ch in arg:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def wait_replicated(cluster: "Cluster", timeout: float = 10):
    """Until every live replica has applied all of its master's replication stream."""
    def caught_up():
        topo = cluster.topology()
        ids = {k: v for k, v in topo.items()}
        live = {n.port for n in cluster.live()}
        for v in topo.values():
            if v["role"] != "replica" or v["port"] not in live or "fail" in v["flags"]:
                continue
            master = ids[v["master_id"]]
            if master["port"] not in live:
                continue
            want = cluster.by_port(master["port"]).client().info("replication")["master_repl_offset"]
            got = cluster.by_port(v["port"]).client().info("replication").get("slave_repl_offset")
            if got != want:
                return False
        return True
    wait_until("replicas to catch up with their masters", caught_up, timeout)


# -- slot moves --------------------------------------------------------------------------------


def wait_for_progress(count, before: int, pause: float = 0.03, timeout: float = 5.0) -> None:
    """Sleeps `pause`, then until `count()` has grown past `before` or `timeout` passes: the
    checks running beside a migration get to see each of its states however slow the machine
    is, rather than a count fixed in advance."""
    time.sleep(pause)
    deadline = time.time() + timeout
    while count() <= before and time.time() < deadline:
        time.sleep(0.01)


def move_slot(cluster: "Cluster", slot: int, between=None, shards=None) -> list:
    """Moves `slot` to another master by hand: IMPORTING/MIGRATING, MIGRATE key by key
    (`between(i, key)` after each), SETSLOT NODE on every master. Returns the keys moved. A key
    listed that expired before its MIGRATE (another test's) answers NOKEY, which is fine."""
    shards = shards or cluster.shards()
    src, _ = cluster.shard_of(slot, shards)
    tgt = next(m for m, _, _ in shards if m is not src)
    s, d = src.client(), tgt.client()
    assert d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id())
    assert s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", tgt.node_id())
    keys = s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
    for i, k in enumerate(keys):
        assert s.execute_command("MIGRATE", "127.0.0.1", tgt.port, k, 0, 5000) in (b"OK", "OK", b"NOKEY", "NOKEY")
        if between is not None:
            between(i, k)
    for m in [tgt, src] + [m for m, _, _ in shards if m not in (src, tgt)]:
        m.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", tgt.node_id())
    return keys


# -- tokens ----------------------------------------------------------------------------------


def mint(sub: str, iat: int | float | None = None, exp: int = FAR_EXP, **claims) -> str:
    """An HS256 token signed with the shared test secret (PyJWT)."""
    payload = {"sub": sub, "iat": int(time.time()) - 60 if iat is None else iat, "exp": exp, **claims}
    return jwt.encode(payload, HS256_SECRET, algorithm="HS256", headers={"kid": HS256_KID})


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint_raw(payload_text: str) -> str:
    """An HS256 token whose payload is exactly this JSON text (for NumericDate spellings and
    escapes that json.dumps would normalise)."""
    header = _b64(json.dumps({"alg": "HS256", "kid": HS256_KID, "typ": "JWT"}).encode())
    body = _b64(payload_text.encode("utf-8"))
    sig = hmac.new(HS256_SECRET, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(sig)}"


def slot_of(key: str) -> int:
    from redis.crc import key_slot
    return key_slot(key.encode())


def subs_in_slot(slot: int, count: int, stem: str) -> list[str]:
    """`count` distinct subjects whose keys all hash to `slot`."""
    out, i = [], 0
    while len(out) < count:
        s = f"{stem}-{i}"
        if slot_of(jwtdeny_keys.subject_key(s)) == slot:
            out.append(s)
        i += 1
    return out


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def workdir():
    d = pathlib.Path(tempfile.mkdtemp(prefix="jwtdeny-cluster-", dir=os.environ.get("JWTDENY_CLUSTER_DIR")))
    yield d
    if not os.environ.get("JWTDENY_KEEP_LOGS"):
        shutil.rmtree(d, ignore_errors=True)
    else:
        print(f"\nserver dirs kept in {d}")


@pytest.fixture(scope="session")
def module_so(workdir):
    src = pathlib.Path(os.environ.get("JWTDENY_MODULE", REPO / "target/release/libjwtdeny.so"))
    if not src.is_file():
        pytest.exit(f"module not built: {src} (run `cargo build --release`)", returncode=2)
    dst = workdir / "libjwtdeny.so"
    shutil.copy2(src, dst)
    return dst


def _cluster(module_so, workdir, name, request):
    c = Cluster(module_so, workdir, name)
    try:
        c.start()
    except BaseException:
        c.stop()
        raise
    yield c
    failed = request.session.testsfailed
    c.stop()
    if failed:
        for n in c.nodes:
            print(f"\n--- {name} {n} log tail ---\n{n.log_tail(8)}")


@pytest.fixture(scope="session")
def cluster(module_so, workdir, request):
    """One cluster shared by the tests that leave its shape as it is (resharding moves one
    slot between masters, which every client follows)."""
    yield from _cluster(module_so, workdir, "shared", request)


@pytest.fixture(scope="module")
def own_cluster(module_so, workdir, request):
    """A cluster of the test module's own, for tests that kill nodes."""
    yield from _cluster(module_so, workdir, request.module.__name__, request)


@pytest.fixture
def rc(cluster):
    return cluster.rc()
