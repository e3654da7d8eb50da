"""gitconf: GitOps reconciliation of service configuration into etcd."""

__version__ = "0.2.0"
