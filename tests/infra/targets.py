"""The hosts the checks run on: settings and inventory as the tasks read them, testinfra hosts over OpenSSH.

One `Targets` per pytest process (made by conftest.py). Hosts are testinfra's `ssh`
backend, `ssh://<name>`: OpenSSH with `-F <inventory>/ssh_config`, so StrictHostKeyChecking
yes against inventory/known_hosts applies (testinfra's paramiko backend reads the config
file but accepts unknown host keys with a warning). Each host gets one multiplexed
connection (ControlMaster; `close()` ends it), BatchMode so nothing ever prompts, and
`?sudo=true` when its inventory user is not root. All of a host's check commands run
together in one round trip (`probe`): a multiplexed command still costs ~0.1 s. And
`prefetch` does that for all hosts of the process at once, in threads.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import testinfra.host

    from coursehub.inventory import Host, Inventory
    from coursehub.settings import Settings
    from tests.infra.facts import Skip


@dataclass
class Targets:
    """Settings, inventory and the open testinfra hosts of this process."""

    settings: Settings
    inventory: Inventory
    ssh_config: Path
    control: str = ""
    hosts: dict[str, testinfra.host.Host] = field(default_factory=dict)
    logins: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, ssh_config: str | None = None) -> Targets:
        """Read vars.yml and the inventory from $COURSEHUB_VARS / $COURSEHUB_INVENTORY (as the tasks do)."""
        from coursehub import inventory
        from coursehub.settings import inventory_dir, load

        inv = inventory.load(inventory_dir())
        return cls(load(), inv, Path(ssh_config or inv.ssh_config).resolve())

    def select(self, names: list[str], role: str) -> list[Host]:
        """The inventory hosts named (all if none) that have `role` ("" = any)."""
        from coursehub.inventory import InventoryError

        try:
            return self.inventory.select(names, role)
        except InventoryError as e:
            raise pytest.UsageError(str(e)) from None

    def host(self, name: str) -> testinfra.host.Host:
        """The testinfra host for inventory host `name`, made once."""
        import testinfra

        if name not in self.hosts:
            if not self.control:
                self.control = tempfile.mkdtemp(prefix="chk-", dir="/tmp")  # short: socket paths max 104 bytes
            node = self.inventory.get(name)
            spec = f"ssh://{name}" + ("" if node.user == "root" else "?sudo=true")
            extra = f"-o BatchMode=yes -o LogLevel=ERROR -o ControlPath={self.control}/%C"
            self.hosts[name] = testinfra.get_host(spec, ssh_config=str(self.ssh_config), ssh_extra_args=extra,
                                                  controlpersist=30, timeout=10)
        return self.hosts[name]

    def login_problem(self, host: testinfra.host.Host) -> str:
        """'' when we can log in and act as root, else why not (asked once per host)."""
        name = host.backend.hostname
        if name not in self.logins:
            try:
                r = host.run("id -u")
            except RuntimeError as e:  # ssh exited 255: connection, host key or login refused
                out = e.args[0] if e.args else None
                self.logins[name] = "cannot log in: " + ssh_error(getattr(out, "stderr", "") or str(out or ""))
            else:
                root = r.rc == 0 and r.stdout.strip() == "0"
                why = " ".join((r.stderr or r.stdout).split())[:200]
                self.logins[name] = "" if root else f"logged in, but cannot act as root: {why or 'id -u is not 0'}"
        return self.logins[name]

    def probe(self, host: testinfra.host.Host, commands: dict[str, str]) -> dict[str, str]:
        """Every check's command on `host` in one round trip (first call); check -> output."""
        from tests.infra.facts import batch, split

        name = host.backend.hostname
        if name not in self.outputs:
            self.outputs[name] = split(host.run(batch(commands)).stdout)
        return self.outputs[name]

    def prefetch(self, commands: dict[str, dict[str, str]], threads: int) -> None:
        """Log into every host and run its checks' commands, `threads` hosts at once.

        The checks then only judge what was read, so one process checks many hosts in
        about the time of the slowest. Each host's work is bounded on its own: ssh's
        ConnectTimeout and ServerAlive settings (inventory/ssh_config), and a time limit
        per command on the host (facts.batch).
        """
        hosts = {name: self.host(name) for name in commands}  # made here, in one thread
        gate = threading.Semaphore(max(1, threads))

        def work(name: str) -> None:
            with gate:
                try:
                    if not self.login_problem(hosts[name]):
                        self.probe(hosts[name], commands[name])
                except RuntimeError as e:  # ssh exited 255 during the probe: the host went away
                    out = e.args[0] if e.args else None
                    self.logins[name] = "lost while reading the host: " + ssh_error(getattr(out, "stderr", "") or "")
                except Exception as e:  # a broken host must not stop the others; its checks say why
                    self.logins[name] = f"cannot check: {type(e).__name__}: {e}"[:300]

        workers = [threading.Thread(target=work, args=(n,), name=f"check-{n}", daemon=True) for n in hosts]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    def close(self) -> None:
        """End the multiplexed connections and remove their sockets."""
        if not self.control:
            return
        for name in self.hosts:
            subprocess.run(["ssh", "-F", str(self.ssh_config), "-o", f"ControlPath={self.control}/%C", "-O", "exit",
                            name], capture_output=True, timeout=10, stdin=subprocess.DEVNULL, check=False)
        shutil.rmtree(self.control, ignore_errors=True)
        self.control = ""
        self.hosts.clear()


def ssh_error(stderr: str) -> str:
    """The lines of OpenSSH's complaint that say what happened (not its @@@ banner), as one line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.lstrip().startswith("@")]
    return " ".join(" ".join(lines[-2:]).split())[:300] or "ssh exited 255"


def verdict(result: list[str] | Skip) -> None:
    """Pass, skip or fail the current check on a judge's result (problems joined into one line)."""
    from tests.infra.facts import Skip

    if isinstance(result, Skip):
        pytest.skip(result.reason)
    assert not result, "; ".join(result)
