"""`gitconf daemon`: keeps etcd equal to a Git branch (SPEC §6)."""
