"""The hub health check: a throwaway user spawns a server that answers through the proxy.

    result = health.check(api, attempts=3, timeout=180, remove_host_user=fn)

One attempt: clear leftovers of an earlier failed run (stop the test user's server,
delete the user, remove its Unix account on a single hub), create the user, start
its server, wait until it is ready, GET /user/<name>/api/status through the proxy,
stop the server and delete the user. Cleanup runs whatever happened. A failed
attempt is retried until `attempts` run out; each wait is bounded by `timeout`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from coursehub.hub.rest import HubAPI, HubAPIError

TEST_USER = "coursehub-health-check"


@dataclass
class HealthResult:
    ok: bool
    attempts: int
    seconds: float
    errors: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)


def cleanup(api: HubAPI, user: str, timeout: float, remove_host_user: Callable[[str], None] | None = None) -> None:
    """Remove `user` and its server, whatever state they are in (no error if absent)."""
    if api.user(user) is not None:
        if api.stop_server(user) == 202:
            api.wait_server(user, ready=False, timeout=timeout)
        api.delete_user(user)
    if remove_host_user is not None:
        remove_host_user(user)


def attempt(api: HubAPI, user: str, timeout: float, log: Callable[[str], None],
            remove_host_user: Callable[[str], None] | None = None) -> None:
    """One full check; raises HubAPIError on the first failure (after cleaning up)."""
    info = api.info()
    log(f"hub {info.get('version', '?')} answers at {api.base}")
    try:
        cleanup(api, user, timeout, remove_host_user)
        api.create_user(user)
        log(f"created user {user}")
        api.start_server(user)
        t0 = time.monotonic()
        api.wait_server(user, ready=True, timeout=timeout)
        log(f"server ready in {time.monotonic() - t0:.1f} s")
        status = api.server_status(user)
        log(f"server answers through the proxy ({api.root}/user/{user}/api/status: "
            f"{len(status.get('kernels', []) if isinstance(status.get('kernels'), list) else [])} kernels, "
            f"started {status.get('started', '?')})")
        if api.stop_server(user) == 202:
            api.wait_server(user, ready=False, timeout=timeout)
        log("server stopped")
    finally:
        try:
            cleanup(api, user, timeout, remove_host_user)
            log(f"deleted user {user}")
        except HubAPIError as e:
            log(f"cleanup failed: {e}")
            raise


def check(api: HubAPI, attempts: int = 3, timeout: float = 180, log: Callable[[str], None] = print,
          remove_host_user: Callable[[str], None] | None = None, user: str = TEST_USER,
          pause: float = 5.0) -> HealthResult:
    """Run up to `attempts` attempts; ok as soon as one passes."""
    t0 = time.monotonic()
    result = HealthResult(ok=False, attempts=0, seconds=0.0)
    for n in range(1, attempts + 1):
        result.attempts = n
        try:
            attempt(api, user, timeout, lambda line: (result.steps.append(line), log(line)),
                    remove_host_user)
            result.ok = True
            break
        except (HubAPIError, OSError, RuntimeError) as e:
            msg = f"attempt {n}/{attempts}: {e}"
            result.errors.append(msg)
            log(msg)
            if n < attempts:
                time.sleep(pause)
    result.seconds = time.monotonic() - t0
    return result
