"""Generate the reference repository of SPEC §8: 1,000 services x 3 environments, ~33 keys per
file (~100,000 keys), realistic nesting, a JSON Schema per service with types, ranges, patterns,
enums, required keys and a secret.

Every service's schema has the same content so that check-jsonschema can validate all files
against one schema in one process (its fastest use); gitconf still compiles one validator per
service, as it would for real.

    python benchmarks/generate.py OUT_DIR [--services 1000] [--git]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
from pathlib import Path

ENVS = ("dev", "staging", "prod")

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "server": {"type": "object", "properties": {
            "host": {"type": "string", "pattern": "^[a-z0-9.-]+$"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "workers": {"type": "integer", "minimum": 1, "maximum": 256},
            "timeouts": {"type": "object", "properties": {
                "read_ms": {"type": "integer", "minimum": 1},
                "write_ms": {"type": "integer", "minimum": 1},
                "idle_ms": {"type": "integer", "minimum": 1}}}},
            "required": ["host", "port"]},
        "database": {"type": "object", "properties": {
            "host": {"type": "string", "pattern": "^[a-z0-9.-]+$"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "name": {"type": "string", "minLength": 1},
            "user": {"type": "string"},
            "password": {"type": "string", "writeOnly": True, "minLength": 8},
            "pool_size": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
            "ssl": {"type": "object", "properties": {
                "enabled": {"type": "boolean"},
                "mode": {"enum": ["disable", "require", "verify-full"]}}}},
            "required": ["host", "password"]},
        "cache": {"type": "object", "properties": {
            "backend": {"enum": ["redis", "memcached", "memory"]},
            "ttl_seconds": {"type": "integer", "minimum": 0, "maximum": 86400},
            "max_entries": {"type": "integer", "minimum": 0}}},
        "feature_flags": {"type": "object",
                          "additionalProperties": {"type": "boolean"}},
        "logging": {"type": "object", "properties": {
            "level": {"enum": ["debug", "info", "warning", "error"]},
            "format": {"enum": ["json", "text"]},
            "sampling_rate": {"type": "number", "minimum": 0, "maximum": 1}}},
        "limits": {"type": "object", "properties": {
            "rps": {"type": "integer", "minimum": 1},
            "burst": {"type": "integer", "minimum": 1},
            "max_body_kb": {"type": "integer", "minimum": 1}}},
        "endpoints": {"type": "array", "items": {"type": "string"}},
        "owner": {"type": "string", "pattern": "^[a-z0-9.-]+@example\\.com$"},
        "team": {"type": "string"},
        "region": {"enum": ["eu-west-1", "us-east-1", "ap-south-1"]},
        "replicas": {"type": "integer", "minimum": 0, "maximum": 100},
        "release_date": {"type": "string"},
    },
    "required": ["server", "database", "owner"],
}


def values_yaml(service: str, env: str, rnd: random.Random, flags: int = 0) -> str:
    i = rnd.randrange(1000)
    extra = "".join(f"  flag_{k:04d}: {str(rnd.random() < 0.5).lower()}\n" for k in range(flags))
    return f"""\
# {service} in {env}
server:
  host: {service}.{env}.internal
  port: {8000 + i % 1000}
  workers: {rnd.choice([2, 4, 8, 16])}
  timeouts:
    read_ms: {rnd.choice([500, 1000, 2000])}
    write_ms: {rnd.choice([500, 1000, 2000])}
    idle_ms: 60000
database:
  host: {service}-db.{env}.internal
  port: 5432
  name: {service.replace('-', '_')}
  user: {service.replace('-', '_')}_app
  password: {env}-{service}-secret-{i:04d}
  pool_size: {rnd.choice([10, 20, 50, 100])}
  ssl:
    enabled: {str(env == 'prod').lower()}
    mode: {'verify-full' if env == 'prod' else 'disable'}
cache:
  backend: {rnd.choice(['redis', 'memcached', 'memory'])}
  ttl_seconds: {rnd.choice([60, 300, 3600])}
  max_entries: {rnd.choice([1000, 10000, 100000])}
feature_flags:
  new_checkout: {str(rnd.random() < 0.5).lower()}
  dark_mode: {str(rnd.random() < 0.5).lower()}
  beta_search: {str(rnd.random() < 0.5).lower()}
  fast_path: {str(rnd.random() < 0.5).lower()}
{extra}logging:
  level: {'debug' if env == 'dev' else 'info'}
  format: json
  sampling_rate: {rnd.choice([0.1, 0.5, 1.0])}
limits:
  rps: {rnd.choice([100, 500, 1000])}
  burst: {rnd.choice([10, 50, 100])}
  max_body_kb: 1024
endpoints:
  - https://{service}.{env}.example.com/api
  - https://{service}.{env}.example.com/health
owner: team-{i % 50}@example.com
team: team-{i % 50}
region: {rnd.choice(['eu-west-1', 'us-east-1', 'ap-south-1'])}
replicas: {rnd.choice([1, 2, 3, 6])}
release_date: 2025-0{1 + i % 9}-1{i % 10}
"""


def generate(root: Path, services: int = 1000, git: bool = False, flags: int = 0,
             ) -> list[Path]:
    """Write the repository; returns the values files. `flags` adds that many feature flags
    to every file: more keys in the same units (`bench_scale.py --wide`)."""
    rnd = random.Random(42)
    root.mkdir(parents=True, exist_ok=True)
    (root / ".gitconf.yaml").write_text("environments: [dev, staging, prod]\n")
    schema_text = json.dumps(SCHEMA, indent=2)
    files = []
    for n in range(services):
        name = f"svc-{n:04d}"
        d = root / name
        d.mkdir(exist_ok=True)
        (d / "schema.json").write_text(schema_text)
        for env in ENVS:
            f = d / f"{env}.yaml"
            f.write_text(values_yaml(name, env, rnd, flags))
            files.append(f)
    if git:
        env = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
               "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
               "PATH": "/usr/bin:/bin:/usr/local/bin"}
        for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                     ["commit", "-q", "-m", "reference repository"]):
            subprocess.run(["git", *args], cwd=root, check=True, env=env)
    return files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--git", action="store_true")
    ap.add_argument("--flags", type=int, default=0, help="extra feature flags in every file")
    a = ap.parse_args()
    files = generate(a.out, a.services, a.git, a.flags)
    print(f"{len(files)} values files in {a.out}")


if __name__ == "__main__":
    main()
