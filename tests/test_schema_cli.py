"""Schema rules through `gitconf validate` (SPEC §2, §7; docs/schemas.md): each problem with its
code, file, line, column and message; warnings that leave the repository valid; a ReDoS
pattern that cannot hang the command; and secrets matched by pattern never printed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers import cli

SCHEMA = "payments/schema.yaml"
PROD = "payments/prod.yaml"

PAYMENTS = """\
timeout: {type: string}
database:
  host: {type: string, required: true}
  port: {type: integer}
  password: {type: string, secret: true}
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    return root


def validate(root: Path) -> tuple[int, dict[str, Any]]:
    res = cli("validate", str(root), "-f", "json")
    return res.exit_code, res.json()


def where(report: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    return [(p["code"], p["file"], p["line"], p["column"]) for p in report["problems"]]


def test_unknown_key_names_the_closest_declared_key(tmp_path: Path) -> None:
    write(tmp_path, {SCHEMA: PAYMENTS,
                     PROD: "database:\n  host: db\n  prot: 5432\ntiemout: 5s\n"})
    code, report = validate(tmp_path)
    assert code == 1 and report["valid"] is False
    assert where(report) == [("unknown-key", PROD, 3, 3), ("unknown-key", PROD, 4, 1)]
    messages = [p["message"] for p in report["problems"]]
    assert messages == [
        "`database.prot`: not in the schema of payments; did you mean `database.port`?",
        "`tiemout`: not in the schema of payments; did you mean `timeout`?",
    ]
    assert [p["key"] for p in report["problems"]] == ["database.prot", "tiemout"]
    text = cli("validate", str(tmp_path)).stdout
    assert "4:1  unknown-key  `tiemout`: not in the schema of payments; did you mean" in text


def test_additional_true_opens_one_group(tmp_path: Path) -> None:
    write(tmp_path, {SCHEMA: PAYMENTS + "labels:\n  additional: true\n",
                     PROD: "database: {host: db}\nlabels:\n  team: payments\n  tier: 1\n"})
    assert validate(tmp_path) == (0, {"valid": True, "files": 2, "keys": 3, "units": 1,
                                      "problems": []})
    write(tmp_path, {PROD: "database: {host: db, extra: 1}\nlabels: {team: payments}\n"})
    code, report = validate(tmp_path)
    assert code == 1 and where(report) == [("unknown-key", PROD, 1, 22)]
    assert report["problems"][0]["key"] == "database.extra"


def test_unknown_keys_warn_keeps_the_repository_valid(tmp_path: Path) -> None:
    write(tmp_path, {".gitconf.yaml": "unknown_keys: warn\n", SCHEMA: PAYMENTS,
                     PROD: "database:\n  host: db\ntiemout: 5s\n"})
    code, report = validate(tmp_path)
    assert code == 0 and report["valid"] is True
    (p,) = report["problems"]
    assert (p["code"], p["file"], p["line"], p["column"], p["severity"]) == \
        ("unknown-key", PROD, 3, 1, "warning")
    github = cli("validate", str(tmp_path), "-f", "github")
    assert github.exit_code == 0
    assert any(ln.startswith("::warning file=") and "title=gitconf unknown-key" in ln
               for ln in github.stdout.splitlines())


def test_missing_required_key_points_at_its_parent(tmp_path: Path) -> None:
    write(tmp_path, {SCHEMA: PAYMENTS,
                     PROD: "timeout: 5s\ndatabase:\n  port: 1\n  password: hunter2-secret\n"})
    code, report = validate(tmp_path)
    assert code == 1 and where(report) == [("schema", PROD, 2, 1)]
    (p,) = report["problems"]
    assert (p["key"], p["message"]) == ("database.host", "`database.host` is required but missing")
    text = cli("validate", str(tmp_path)).stdout
    assert "   2 | database:\n" in text  # the parent's line, as written: nothing to mask
    assert "hunter2-secret" not in text


def test_missing_required_group_points_at_line_one(tmp_path: Path) -> None:
    write(tmp_path, {SCHEMA: PAYMENTS, PROD: "# no database yet\ntimeout: 5s\n"})
    code, report = validate(tmp_path)
    assert code == 1 and where(report) == [("schema", PROD, 1, 1)]
    assert report["problems"][0]["message"] == "`database` is required but missing"


def test_secret_of_the_wrong_type_says_the_expected_type(tmp_path: Path) -> None:
    write(tmp_path, {SCHEMA: PAYMENTS, PROD: "database:\n  host: db\n  password: 918273645\n"})
    code, report = validate(tmp_path)
    assert code == 1 and where(report) == [("schema", PROD, 3, 3)]
    assert report["problems"][0]["message"] == \
        "`database.password`: expected string (value is secret, not shown)"
    for fmt in ("text", "json", "github"):
        assert "918273645" not in cli("validate", str(tmp_path), "-f", fmt).stdout, fmt


def test_redos_pattern_finishes_quickly(tmp_path: Path) -> None:
    """`^(a+)+$` against 40 a's and a `!` takes a backtracking engine hours."""
    write(tmp_path, {SCHEMA: 'name: {type: string, pattern: "^(a+)+$"}\n',
                     PROD: "name: " + "a" * 40 + "!\n"})
    # as a process under a hard timeout first: a regression fails here instead of hanging
    env = {**os.environ, "NO_COLOR": "1"}
    res = subprocess.run([sys.executable, "-m", "gitconf", "validate", str(tmp_path), "-f",
                          "json"], capture_output=True, text=True, timeout=30, env=env)
    assert res.returncode == 1 and '"code": "schema"' in res.stdout
    start = time.monotonic()  # the command itself, start-up aside
    code, report = validate(tmp_path)
    assert time.monotonic() - start < 1.0
    assert code == 1 and where(report) == [("schema", PROD, 1, 1)]
    assert report["problems"][0]["message"].endswith("does not match '^(a+)+$'")


def test_invalid_regex_is_a_positioned_problem(tmp_path: Path) -> None:
    write(tmp_path, {SCHEMA: 'name: {type: string}\nid: {type: string, pattern: "("}\n',
                     PROD: "name: x\n"})
    code, report = validate(tmp_path)
    assert code == 1 and where(report) == [("schema", SCHEMA, 2, 20)]
    assert report["problems"][0]["message"].startswith("invalid regular expression '('")
    write(tmp_path / "j", {"svc/schema.json": '{\n  "type": "object",\n  "patternProperties": '
                                              '{\n    "(": {"type": "string"}\n  }\n}\n',
                           "svc/prod.yaml": "a: x\n"})
    code, report = validate(tmp_path / "j")
    assert code == 1 and where(report) == [("schema", "svc/schema.json", 4, 5)]


def test_backreference_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {SCHEMA: "code: {type: string, pattern: '^(x+)\\1$'}\n", PROD: "code: xx\n"})
    code, report = validate(tmp_path)
    assert code == 1 and where(report) == [("schema", SCHEMA, 1, 22)]
    assert report["problems"][0]["message"].startswith(
        "pattern uses a construct gitconf does not evaluate (backreference/lookaround): ")


SECRET = "S3CRET-9f8e7d"


def test_pattern_and_additional_secrets_are_never_printed(tmp_path: Path) -> None:
    json_schema = """{
  "type": "object",
  "properties": {
    "tokens": {"type": "object", "patternProperties": {"^tok_": {"type": "string",
               "writeOnly": true, "minLength": 40}}},
    "creds": {"type": "object", "properties": {"user": {"type": "string"}},
              "additionalProperties": {"type": "string", "writeOnly": true, "pattern": "^pw_"}}
  }
}
"""
    write(tmp_path, {
        "svc/schema.json": json_schema,
        "svc/prod.yaml": f"tokens:\n  tok_a: {SECRET}\ncreds: {{user: bob, pw: {SECRET}}}\n",
        SCHEMA: "partners:\n  additional: {type: string, secret: true, min: 30}\n",
        PROD: f"partners:\n  acme: {SECRET}\n  globex: [{SECRET}]\n",
    })
    code, report = validate(tmp_path)
    assert code == 1
    assert sorted((p["file"], p["line"], p["key"]) for p in report["problems"]) == [
        (PROD, 2, "partners.acme"), (PROD, 3, "partners.globex"),
        ("svc/prod.yaml", 2, "tokens.tok_a"), ("svc/prod.yaml", 3, "creds.pw")]
    assert all("secret, not shown" in p["message"] for p in report["problems"])
    for fmt in ("text", "json", "github"):
        res = cli("validate", str(tmp_path), "-f", fmt)
        assert res.exit_code == 1
        assert SECRET not in res.stdout + res.stderr, fmt
