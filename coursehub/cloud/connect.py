"""Connecting to the cloud: credentials, the preflight, and retrying transient errors.

Credentials come from a clouds.yaml cloud (`cloud.name`, incl. application
credentials) or the OS_* variables of a sourced openrc.sh. A missing password
is prompted for without echo and only ever kept in memory (and registered with
the redactor, so no output can show it).
"""

from __future__ import annotations

import getpass
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from coursehub import secrets

if TYPE_CHECKING:
    from openstack.connection import Connection

    from coursehub.settings import Settings

T = TypeVar("T")


class CloudError(Exception):
    """A cloud problem an admin can act on; str() is one line. `code` 2 means bad input."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Identity:
    auth_url: str
    user: str
    project: str
    region: str


def connect(s: Settings, clouds_yaml: str = "", interactive: bool | None = None) -> Connection:
    """An authenticated openstacksdk Connection for vars.yml's cloud (no request sent yet)."""
    import openstack
    from openstack import exceptions as osx
    from openstack.config import loader

    interactive = sys.stdin.isatty() if interactive is None else interactive
    kwargs: dict[str, Any] = {"api_timeout": s.cloud.api_timeout}
    if s.cloud.region:
        kwargs["region_name"] = s.cloud.region
    secrets.redactor()  # registers OS_PASSWORD and friends before anything can print them
    try:
        if s.cloud.name:
            files = [clouds_yaml] if clouds_yaml else None
            cfg = loader.OpenStackConfig(config_files=files) if files else loader.OpenStackConfig()
            region = cfg.get_one(cloud=s.cloud.name, **kwargs)
            if not region.auth.get("password") and region.config.get("auth_type", "password") in ("password", "v3password"):
                kwargs["password"] = _ask_password(interactive, region.auth.get("username", "?"))
                region = cfg.get_one(cloud=s.cloud.name, **kwargs)
            return openstack.connection.Connection(config=region)
        if not os.environ.get("OS_AUTH_URL"):
            raise CloudError("vars.yml: cloud.name: no cloud configured (got ''; expected a cloud in clouds.yaml, "
                             "or source your openrc.sh first)", code=2)
        if not (os.environ.get("OS_PASSWORD") or os.environ.get("OS_APPLICATION_CREDENTIAL_SECRET")):
            kwargs["password"] = _ask_password(interactive, os.environ.get("OS_USERNAME", "?"))
        return openstack.connect(**kwargs)
    except osx.ConfigException as e:
        raise CloudError(f"vars.yml: cloud.name: {e} (got {s.cloud.name!r}; expected a cloud in clouds.yaml)", code=2) from None


def _ask_password(interactive: bool, user: str) -> str:
    if not interactive:
        raise CloudError("cloud: no password (set OS_PASSWORD, use an application credential, "
                         "or run interactively to be asked)", code=2)
    pw = getpass.getpass(f"OpenStack password for {user}: ")
    secrets.KNOWN.add([pw])
    return pw


def preflight(conn: Connection) -> Identity:
    """Authenticate now; say who and which project, or fail with one clear line."""
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as osx

    auth = conn.config.auth
    ident = Identity(
        auth_url=str(auth.get("auth_url", "?")),
        user=str(auth.get("username") or auth.get("application_credential_id") or auth.get("application_credential_name") or "?"),
        project=str(auth.get("project_name") or auth.get("project_id") or "?"),
        region=str(conn.config.region_name or "default"),
    )
    try:
        try:
            conn.authorize()
        except osx.SDKException as e:  # the SDK wraps keystoneauth's error; judge by the cause
            cause = e.__cause__ or e.__context__
            raise cause if isinstance(cause, ksa.ClientException) else e from None
    except ksa.Unauthorized:
        raise CloudError(f"cloud: authentication failed for {ident.user} in project {ident.project} at "
                         f"{ident.auth_url} (HTTP 401): check the password or credential", code=2) from None
    except (ksa.ConnectFailure, ksa.ConnectTimeout, ksa.DiscoveryFailure) as e:
        raise CloudError(f"cloud: cannot reach {ident.auth_url}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    except (ksa.ClientException, osx.SDKException) as e:
        raise CloudError(f"cloud: {ident.auth_url}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return ident


def transient(e: BaseException) -> bool:
    """5xx answers, timeouts and dropped connections: worth another try."""
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as osx

    if isinstance(e, (ksa.ConnectFailure, ksa.ConnectTimeout, ksa.RetriableConnectionFailure)):
        return True
    if isinstance(e, osx.HttpException):
        code = getattr(e, "status_code", None)
        return code is None or code >= 500
    return isinstance(e, ksa.ServiceUnavailable | ksa.BadGateway | ksa.GatewayTimeout | ksa.InternalServerError)


class Retrier:
    """Call with retries and jittered exponential backoff on transient errors only."""

    def __init__(self, retries: int, base: float = 0.5, cap: float = 8.0, log: Callable[[str], None] | None = None):
        self.retries, self.base, self.cap = retries, base, cap
        self.log = log or (lambda m: None)
        self.retried = 0

    def __call__(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                if not transient(e) or attempt >= self.retries:
                    raise
                delay = min(self.cap, self.base * 2**attempt) * (0.5 + random.random() / 2)
                attempt += 1
                self.retried += 1
                self.log(f"{what}: {type(e).__name__} ({_short(e)}); retry {attempt}/{self.retries} in {delay:.1f} s")
                time.sleep(delay)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return secrets.redactor()(text[0][:120]) if text else type(e).__name__
