"""Fault-injection tests: real etcd processes and clusters, real Git remotes, real `gitconf`
processes killed and frozen. Everything on loopback; every wait bounded in count and time."""
