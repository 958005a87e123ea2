"""The jwtdeny npm package and Python wheel against the cluster: their own test files
(clients/node/test-app, clients/python/test-app), run from the fresh project and venv that
run.sh installed them into, with JWTDENY_CLUSTER_NODES set, so every client (node-redis
createCluster, ioredis Cluster, redis-py RedisCluster sync and asyncio) goes through the keyed
forms and the HTTP guards answer from the cluster."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from conftest import HS256_KID, KEYS_FILE, REPO

NODE_APP = os.environ.get("JWTDENY_PKG_NODE_APP")
PY = os.environ.get("JWTDENY_PKG_PY")
PY_APP = os.environ.get("JWTDENY_PKG_PY_APP")

pytestmark = pytest.mark.skipif(
    not (NODE_APP and PY and PY_APP),
    reason="the installed packages come from tests/cluster/run.sh (JWTDENY_PKG_* not set)",
)


# What the packages' logout tests need, restored after. Not max-lifetime (it cannot be lowered
# back at runtime, and the other tests mint tokens living until 2100): on the cluster a session's
# logout therefore revokes by subject, the other documented behaviour, which the tests expect.
SESSION_CONFIG = {"jwtdeny.logout-audience": "jwtdeny-package-tests"}


@pytest.fixture
def sessions(cluster):
    saved = []
    try:
        for node in cluster.live():
            c = node.client()
            saved.append((c, {k: c.config_get(k)[k] for k in SESSION_CONFIG}))
            for k, v in SESSION_CONFIG.items():
                c.config_set(k, v)
        yield cluster
    finally:
        for c, old in saved:
            for k, v in old.items():
                c.config_set(k, v)


def package_env(cluster) -> dict[str, str]:
    return {
        **os.environ,
        "JWTDENY_CLUSTER_NODES": ",".join(n.addr for n in cluster.live()),
        "JWTDENY_TEST_KEYS_FILE": str(KEYS_FILE),
        "JWTDENY_TEST_HS256_FILE": str(REPO / "tests/vectors/private/shared-hs256.key"),
        "JWTDENY_TEST_KID": HS256_KID,
    }


def run(cmd: list[str], cwd: str, cluster) -> None:
    assert pathlib.Path(cwd).is_dir(), f"{cwd} is missing: the package install in run.sh failed"
    out = subprocess.run(cmd, cwd=cwd, env=package_env(cluster), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-6000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_npm_package_on_the_cluster(sessions):
    stdout = run(["node", "--test", "test/"], NODE_APP, sessions)
    # The cluster clients ran (not only the standalone ones, which this mode never starts).
    assert "cluster: ioredis Cluster" in stdout and "cluster: node-redis createCluster" in stdout
    assert "# fail 0" in stdout


def test_python_wheel_on_the_cluster(sessions):
    stdout = run([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", "package_checks.py"], PY_APP, sessions)
    assert " passed" in stdout and "failed" not in stdout
