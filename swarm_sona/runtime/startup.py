"""Start a local Ray on loopback, or join a cluster only when told to, and prove what it binds.

:func:`start_ray` is the one way this package brings Ray up:

- With ``address`` (or ``$RAY_ADDRESS``) it joins that cluster; nothing else does: without
  one it starts a new local Ray (``address="local"``), even where a ``ray start`` cluster
  runs on the machine.
- A local Ray is loopback by construction. Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` when
  it is imported; it is set here before ``import ray`` (and Ray's already-imported constant
  is corrected when the caller imported Ray first), so every process Ray starts inherits it,
  and the node address is 127.0.0.1. After start-up every listening socket of the Ray
  processes (TCP and UDP, IPv4 and IPv6, Ray's agents included) is checked: one beyond
  loopback stops Ray and raises :class:`RayExposureError` naming it.
- A local Ray leaves no process behind when the driver crashes: a small watchdog
  (:class:`~swarm_sona.runtime.reaper.Reaper`) stops the Ray processes this driver started
  once the driver is gone, by PID.

Example:
    >>> from swarm_sona.runtime.startup import start_ray, stop_ray   # doctest: +SKIP
    >>> owns = start_ray(num_cpus=2)                                 # doctest: +SKIP
    >>> stop_ray(owns)                                               # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from swarm_sona.runtime import listeners as listeners_mod
from swarm_sona.runtime.processes import ray_descendants
from swarm_sona.runtime.reaper import Reaper

__all__ = ["LOOPBACK", "RayExposureError", "start_ray", "stop_ray", "check_loopback", "prepare_environment",
           "cluster_cpus", "check_reachable", "LocalCluster"]

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
_CLUSTER_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_reaper: Reaper | None = None


class RayExposureError(RuntimeError):
    """A Ray process of a local run listens beyond loopback (the run is stopped)."""


def prepare_environment() -> None:
    """Make the next local Ray start bind to loopback (call before ``import ray`` when you can).

    Sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (inherited by every process Ray starts) and
    ``RAY_USAGE_STATS_ENABLED=0``; when Ray is already imported, corrects the constant it read
    at import.
    """
    os.environ[_CLUSTER_VAR] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    consts = sys.modules.get("ray._private.ray_constants")
    if consts is not None:
        consts.ENABLE_RAY_CLUSTER = False  # type: ignore[attr-defined]


def check_loopback(*, settle_s: float = 0.0, allow_ports: Iterable[int] = ()) -> list[listeners_mod.Listener]:
    """The listening sockets of this driver and its Ray processes; raises :class:`RayExposureError`
    if any is bound beyond loopback. ``settle_s``: look again until that many seconds have
    passed, for agents that bind late. ``allow_ports``: ports of this driver process that the
    user bound beyond loopback on purpose (e.g. a Prometheus endpoint configured on 0.0.0.0).
    Returns the sockets seen (empty where ``/proc`` is missing).
    """
    allowed = set(allow_ports)
    if not listeners_mod.proc_available():
        log.warning("cannot verify Ray's listening sockets on this platform (no /proc)")
        return []
    deadline = time.monotonic() + settle_s
    skip = {_reaper.pid} if _reaper is not None else set()
    while True:
        pids = [os.getpid(), *(p.pid for p in ray_descendants(os.getpid(), exclude=skip))]
        seen = listeners_mod.listeners(pids)
        bad = [s for s in seen if not s.loopback and not (s.pid == os.getpid() and s.port in allowed)]
        if bad:
            raise RayExposureError("a local Ray process listens beyond loopback: " + "; ".join(map(str, bad))
                                   + f" (expected {LOOPBACK} only; was {_CLUSTER_VAR} changed after import?)")
        if time.monotonic() >= deadline:
            return seen
        time.sleep(0.25)


def start_ray(address: str | None = None, *, num_cpus: int | None = None, verify: bool = True,
              allow_ports: Iterable[int] = (), **init_kwargs: Any) -> bool:
    """Join ``address`` / ``$RAY_ADDRESS``, else start a local Ray on 127.0.0.1 (no dashboard).

    Returns True when this call started a local Ray (stop it with :func:`stop_ray`). Ray that
    is already initialised in this process is used as it is (returns False). ``verify``:
    check the local Ray's listening sockets (see :func:`check_loopback`, and its ``allow_ports``).
    """
    global _reaper
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address:
        prepare_environment()
    import ray

    if ray.is_initialized():
        return False
    if address:
        check_reachable(address)
        ray.init(address=address, log_to_driver=False, **init_kwargs)
        return False
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOOPBACK,
             log_to_driver=False, configure_logging=False, **init_kwargs)
    try:
        _reaper = Reaper.start()
    except OSError as exc:  # the run still works; only crash clean-up is lost
        log.warning("could not start the Ray watchdog (%s): Ray processes may outlive a crashed driver", exc)
    if verify:
        try:
            check_loopback(allow_ports=allow_ports)
        except RayExposureError:
            stop_ray(True)
            raise
    return True


def check_reachable(address: str, *, timeout_s: float = 5.0) -> None:
    """Fail fast (``ConnectionError`` naming the address) when a Ray address cannot be reached.

    ``host:port`` (a GCS) and ``ray://host:port`` (Ray Client) are probed with one TCP connect
    of at most ``timeout_s``; ``auto`` / ``local`` and other forms are left to Ray. Without the
    probe ``ray.init`` keeps retrying a dead address for minutes.

    Example:
        >>> check_reachable("127.0.0.1:1", timeout_s=0.5)
        Traceback (most recent call last):
        ...
        ConnectionError: cannot reach the Ray cluster at 127.0.0.1:1: ...
    """
    import socket
    from urllib.parse import urlsplit

    target = address.strip()
    if target in ("auto", "local") or "://" in target and not target.startswith("ray://"):
        return
    parts = urlsplit(target if "://" in target else f"tcp://{target}")
    if not parts.hostname or parts.port is None:
        return
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {reason} "
                              f"(after {timeout_s:g} s; check RAY_ADDRESS / --address)") from None


def stop_ray(owned: bool) -> None:
    """Shut down the Ray this process started (``owned`` as returned by :func:`start_ray`)."""
    global _reaper
    if not owned:
        return
    import ray

    reaper, _reaper = _reaper, None
    if reaper is not None:
        reaper.stop()
    ray.shutdown()


def cluster_cpus() -> float | None:
    """CPUs of the Ray this process is connected to (None when Ray is not initialised)."""
    import ray

    return ray.cluster_resources().get("CPU") if ray.is_initialized() else None


class LocalCluster:
    """A multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): a head and
    ``nodes - 1`` worker nodes, every node on 127.0.0.1 with ``num_cpus`` logical CPUs and its
    own resource ``node-<i>`` (1 each), no dashboard; this process joins it. A stand-in for
    a real cluster where scheduling across nodes (``placement: spread``), node loss and
    cross-node calls are what is measured. :meth:`close` (or the ``with`` block's end) leaves
    the cluster and stops its processes; nothing else is touched.

    Example:
        >>> with LocalCluster(3) as cluster:                  # doctest: +SKIP
        ...     len(cluster.nodes)
        3
    """

    def __init__(self, nodes: int, *, num_cpus: int = 2, object_store_mb: int = 100,
                 system_config: dict[str, Any] | None = None) -> None:
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise ValueError(f"LocalCluster: nodes must be an integer >= 1, got {nodes!r}")
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1:
            raise ValueError(f"LocalCluster: num_cpus must be an integer >= 1, got {num_cpus!r}")
        prepare_environment()
        import ray
        from ray.cluster_utils import Cluster

        if ray.is_initialized():
            raise RuntimeError("LocalCluster: Ray is already initialised in this process; shut it down first")
        node: dict[str, Any] = {"num_cpus": num_cpus, "node_ip_address": LOOPBACK,
                                "object_store_memory": object_store_mb * 2**20}
        self.cluster = Cluster(initialize_head=True, head_node_args={
            **node, "resources": {"node-0": 1}, "include_dashboard": False,
            **({"_system_config": system_config} if system_config else {})})
        try:
            self.nodes = [self.cluster.head_node] + [self.cluster.add_node(**node, resources={f"node-{i}": 1})
                                                     for i in range(1, nodes)]
            ray.init(address=self.cluster.address, log_to_driver=False, configure_logging=False)
            self.cluster.wait_for_nodes()
        except BaseException:
            self.close()
            raise

    @property
    def address(self) -> str:
        """The head's GCS address (host:port)."""
        return str(self.cluster.address)

    def close(self) -> None:
        """Leave the cluster and stop every process it started."""
        import ray

        ray.shutdown()
        self.cluster.shutdown()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
