"""Kubernetes for the `cluster` topology: pure command builders, parsers, renderers, phases.

Everything here that decides or formats is a pure function, tested offline:

- `commands`: every kubeadm, kubectl, helm and apt invocation as an argv list
  (`shlex.join` makes the exact text a Remote runs); no shell is ever assembled by hand.
- `parse`: probe output -> typed facts (`kubectl get ... -o json`, `kubeadm token create
  --print-join-command`, `apt-cache madison`, `dpkg-query`, `helm list -o json`, ...).
- `pgp`: the pkgs.k8s.io key: fingerprint check and dearmoring, in pure Python.
- `render`: kubeadm configuration and Kubernetes manifests from templates/, each checked
  against a schema before it leaves this machine.
- `phases`: `bootstrap_phases(settings, inventory)`, the ordered (name, hosts, steps) list
  that builds or grows a cluster; `run_phases()` runs it through the fleet.

The steps that use them live in coursehub/steps/kube_*.py; the runbook tasks in
tasks/ops_kube.py. The thin untestable seam (a real API server, kubelet, kubeadm)
is exercised by tests/cloud/ against a real OpenStack project.
"""

ADMIN_CONF = "/etc/kubernetes/admin.conf"
STATE_DIR = "/etc/coursehub"  # rendered kubeadm config, manifests and chart values on the head
CACHE_DIR = "/var/lib/coursehub"  # verified downloads (charts, manifests) on the head

# z2jh's node-pool names (see the chart's scheduling.corePods/userPods docs).
PURPOSE_LABEL = "hub.jupyter.org/node-purpose"
DEDICATED_TAINT = "hub.jupyter.org/dedicated"
