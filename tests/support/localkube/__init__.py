"""A real local Kubernetes control plane for tests and people (``make cluster``).

- :mod:`binaries` — the pinned versions (hack/versions.env) and their build cache;
- :mod:`pki` — certificates and keys;
- :mod:`plane` — :class:`ControlPlane`: etcd, kube-apiserver, kube-controller-manager,
  kube-scheduler on 127.0.0.1, an admin kubeconfig;
- :mod:`api` — :class:`Kube`, the tests' own direct API access, and the kubelet's status
  writes (no node runs pods here);
- :mod:`fixtures` — the pytest fixtures (one control plane per session, a namespace per test);
- ``python -m localkube up|down|status`` — what ``make cluster`` / ``make cluster-down`` run.
"""

from .api import Kube, KubeError
from .binaries import Binaries, Unavailable, ensure, required
from .plane import ControlPlane

__all__ = ["Binaries", "ControlPlane", "Kube", "KubeError", "Unavailable", "ensure", "required"]
