"""`gitconf validate` end to end through the CLI: every class of bad input is reported with its
code, file, line and column, and exits 1; secrets never appear in any output format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "config-repo"

BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]\n"
    for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)

COMPACT = """\
database:
  pool_size: {type: integer, min: 1, max: 1000}
  host: {type: string, required: true}
token: {type: string, secret: true, min: 12}
"""

# name -> (files, expected code, file, line, column)
CASES: dict[str, tuple[dict[str, str | bytes], str, str, int, int]] = {
    "malformed yaml": ({"svc/prod.yaml": "a: [1, 2\nb: 3\n"}, "yaml-syntax", "svc/prod.yaml", 2, 2),
    "tab indentation": ({"svc/prod.yaml": "a:\n\tb: 1\n"}, "yaml-syntax", "svc/prod.yaml", 2, 1),
    "duplicate key": ({"svc/prod.yaml": "a: 1\nb: 2\na: 3\n"}, "duplicate-key", "svc/prod.yaml",
                      3, 1),
    "nested duplicate key": ({"svc/prod.yaml": "db:\n  host: x\n  host: y\n"}, "duplicate-key",
                             "svc/prod.yaml", 3, 3),
    "python tag": ({"svc/prod.yaml": "ok: 1\ncmd: !!python/object/apply:os.system ['id']\n"},
                   "unsafe-tag", "svc/prod.yaml", 2, 6),
    "binary tag": ({"svc/prod.yaml": "blob: !!binary aGVsbG8=\n"}, "unsafe-tag", "svc/prod.yaml",
                   1, 7),
    "set tag": ({"svc/prod.yaml": "s: !!set {a, b}\n"}, "unsafe-tag", "svc/prod.yaml", 1, 4),
    "custom tag": ({"svc/prod.yaml": "x: !vault secret/db\n"}, "unsafe-tag", "svc/prod.yaml",
                   1, 4),
    "integer key": ({"svc/prod.yaml": "a: 1\n42: answer\n"}, "non-string-key", "svc/prod.yaml",
                    2, 1),
    "boolean key (yes/on)": ({"svc/prod.yaml": "on: push\n"}, "non-string-key", "svc/prod.yaml",
                             1, 1),
    "list at top level": ({"svc/prod.yaml": "- a\n- b\n"}, "not-a-mapping", "svc/prod.yaml", 1, 1),
    "scalar at top level": ({"svc/prod.yaml": "just text\n"}, "not-a-mapping", "svc/prod.yaml",
                            1, 1),
    "invalid utf-8": ({"svc/prod.yaml": b"a: 1\nb: caf\xe9\n"}, "encoding", "svc/prod.yaml", 2, 7),
    "reserved key": ({"svc/prod.yaml": "a: 1\n_system:\n  x: 1\n"}, "reserved-key",
                     "svc/prod.yaml", 2, 1),
    "reserved dotted key": ({"svc/prod.yaml": '"_meta.owner": me\n'}, "reserved-key",
                            "svc/prod.yaml", 1, 1),
    "slash in key": ({"svc/prod.yaml": "a:\n  b/c: 1\n"}, "bad-key", "svc/prod.yaml", 2, 3),
    "empty key segment": ({"svc/prod.yaml": '"a..b": 1\n'}, "bad-key", "svc/prod.yaml", 1, 1),
    "flattened key too long": ({"svc/prod.yaml": "a" * 600 + ":\n  " + "b" * 600 + ": 1\n"},
                               "key-too-long", "svc/prod.yaml", 2, 3),
    "value too large": ({"svc/prod.yaml": "a: 1\nbig: " + "x" * (1024 * 1024 + 1) + "\n"},
                        "value-too-large", "svc/prod.yaml", 2, 1),
    "two spellings of a key": (
        {"svc/prod.yaml": 'database:\n  pool_size: 1\n"database.pool_size": 2\n'},
        "key-collision", "svc/prod.yaml", 3, 1),
    "value and group at once": ({"svc/prod.yaml": 'a: 1\n"a.b": 2\n'}, "key-collision",
                                "svc/prod.yaml", 2, 1),
    "infinity": ({"svc/prod.yaml": "a: .inf\n"}, "not-json", "svc/prod.yaml", 1, 4),
    "yaml bomb": ({"svc/prod.yaml": BOMB}, "alias-bomb", "svc/prod.yaml", 0, 0),
    "deep nesting": ({"svc/prod.yaml": "a: " + "[" * 50_000 + "]" * 50_000 + "\n"},
                     "nesting-too-deep", "svc/prod.yaml", 1, 0),
    "recursive alias": ({"svc/prod.yaml": "a: &x [1, *x]\n"}, "nesting-too-deep",
                        "svc/prod.yaml", 1, 0),
    "two documents": ({"svc/prod.yaml": "a: 1\n---\nb: 2\n"}, "yaml-syntax", "svc/prod.yaml", 2, 1),
    "bad service name": ({"Bad_Service/prod.yaml": "a: 1\n"}, "bad-name", "Bad_Service/prod.yaml",
                         1, 1),
    "bad environment name": ({"svc/Prod.yaml": "a: 1\n"}, "bad-name", "svc/Prod.yaml", 1, 1),
    "unknown environment": ({".gitconf.yaml": "environments: [dev, prod]\n",
                             "svc/prdo.yaml": "a: 1\n"}, "unknown-environment", "svc/prdo.yaml",
                            1, 1),
    "environment twice": ({"svc/prod.yaml": "a: 1\n", "svc/prod.yml": "a: 2\n"}, "duplicate-file",
                          "svc/prod.yml", 1, 1),
    "nested directory": ({"svc/prod.yaml": "a: 1\n", "svc/old/prod.yaml": "a: 1\n"}, "layout",
                         "svc/old/prod.yaml", 1, 1),
    "unknown reserved file": ({"svc/prod.yaml": "a: 1\n", "svc/_defaults.yaml": "a: 1\n"},
                              "layout", "svc/_defaults.yaml", 1, 1),
    "settings typo": ({".gitconf.yaml": "environments: [prod]\nignroe: [docs]\n",
                       "svc/prod.yaml": "a: 1\n"}, "settings", ".gitconf.yaml", 2, 1),
    "settings bad value": ({".gitconf.yaml": "drift: sometimes\n", "svc/prod.yaml": "a: 1\n"},
                           "settings", ".gitconf.yaml", 1, 1),
    "schema violation": ({"svc/schema.yaml": COMPACT,
                          "svc/prod.yaml": "database:\n  host: db\n  pool_size: 5000\n"},
                         "schema", "svc/prod.yaml", 3, 3),
    "required key missing": ({"svc/schema.yaml": COMPACT,
                              "svc/prod.yaml": "x: 1\ndatabase:\n  pool_size: 5\n"},
                             "schema", "svc/prod.yaml", 2, 1),  # at the group's own line
    "schema violation in _base": ({"svc/schema.yaml": COMPACT,
                                   "svc/_base.yaml": "database:\n  pool_size: 0\n",
                                   "svc/prod.yaml": "database:\n  host: db\n"},
                                  "schema", "svc/_base.yaml", 2, 3),
    "bad compact schema": ({"svc/schema.yaml": "a:\n  b: {type: integr}\n",
                            "svc/prod.yaml": "a: {b: 1}\n"}, "schema", "svc/schema.yaml", 2, 7),
    "compact schema typo": ({"svc/schema.yaml": "a: {type: integer, maxx: 3}\n",
                             "svc/prod.yaml": "a: 1\n"}, "schema", "svc/schema.yaml", 1, 1),
    "bad JSON schema": ({"svc/schema.json": '{\n  "type": "object",\n  "properties": {\n'
                                            '    "a": {"type": 5}\n  }\n}\n',
                         "svc/prod.yaml": "a: 1\n"}, "schema", "svc/schema.json", 4, 11),
    "unresolvable $ref": ({"svc/schema.yaml": "type: object\nproperties:\n  port:\n"
                                              "    $ref: ../schemas/missing.yaml#/port\n",
                           "svc/prod.yaml": "port: 1\n"}, "schema-ref", "svc/schema.yaml", 4, 5),
}


def _write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_reported_with_code_and_position(tmp_path: Path, name: str) -> None:
    files, code, file, line, column = CASES[name]
    _write(tmp_path, files)
    res = cli("validate", str(tmp_path), "--format", "json")
    assert res.exit_code == 1, res.stdout + res.stderr
    report = res.json()
    assert report["valid"] is False
    matching = [p for p in report["problems"] if p["code"] == code and p["file"] == file]
    assert matching, f"no {code} problem in {file}: {report['problems']}"
    p = matching[0]
    if line:
        assert p["line"] == line, p
    if column:
        assert p["column"] == column, p
    assert p["message"]


def test_example_repository_is_valid() -> None:
    res = cli("validate", str(EXAMPLE))
    assert res.exit_code == 0, res.stdout
    assert "valid" in res.stdout
    report = cli("validate", str(EXAMPLE), "-f", "json").json()
    assert report["valid"] is True and report["problems"] == []
    assert report["keys"] > 100 and report["files"] >= 20


def test_text_output_shows_the_offending_line_and_summary(tmp_path: Path) -> None:
    _write(tmp_path, {"svc/prod.yaml": "a: 1\nb: 2\na: 3\n"})
    res = cli("validate", str(tmp_path))
    assert res.exit_code == 1
    assert "svc/prod.yaml" in res.stdout
    assert "3:1  duplicate-key" in res.stdout
    assert "   3 | a: 3" in res.stdout
    assert "1 problem in 1 file" in res.stdout


def test_github_annotations_point_at_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              ) -> None:
    _write(tmp_path / "config", {"svc/prod.yaml": "a: 1\nb: 2\na: 3\n"})
    monkeypatch.chdir(tmp_path)
    res = cli("validate", "config", "--format", "github")
    assert res.exit_code == 1
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("::")]
    assert lines == [
        "::error file=config/svc/prod.yaml,line=3,col=1,title=gitconf duplicate-key::"
        "duplicate key 'a' (first defined at line 1)"
    ]


def test_github_annotation_escapes_newlines_and_commas(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, {"svc/prod.yaml": "a: [1, 2\nb: 3\n"})
    monkeypatch.chdir(tmp_path)
    res = cli("validate", ".", "-f", "github")
    (line,) = [ln for ln in res.stdout.splitlines() if ln.startswith("::error")]
    assert line.startswith("::error file=svc/prod.yaml,line=2,col=2,title=gitconf yaml-syntax::")
    assert "\n" not in line and "%0A" not in line.split("::", 2)[1]


def test_secret_values_never_appear_in_any_format(tmp_path: Path) -> None:
    secret = "hunter2-secret"
    _write(tmp_path, {"svc/schema.yaml": "token: {type: string, secret: true, pattern: '^sk_'}\n",
                      "svc/prod.yaml": f"token: {secret}\n"})
    for fmt in ("text", "json", "github"):
        res = cli("validate", str(tmp_path), "-f", fmt)
        assert res.exit_code == 1
        assert secret not in res.stdout + res.stderr, fmt
    problems = cli("validate", str(tmp_path), "-f", "json").json()["problems"]
    assert problems[0]["key"] == "token" and problems[0]["line"] == 1


@pytest.mark.parametrize("file", ["svc/prod.yaml", "svc/_base.yaml"])
def test_a_syntax_error_on_a_secrets_line_never_quotes_the_secret(tmp_path: Path,
                                                                   file: str) -> None:
    """A file that does not parse cannot tell which key a line holds: in a service with
    secrets, the quoted source line keeps its key and hides the rest."""
    secret = "hunter2-unclosed"
    files = {"svc/schema.yaml": "token: {type: string, secret: true}\nport: {type: integer}\n",
             "svc/prod.yaml": "port: 1\n", file: f'port: 1\ntoken: "{secret}\n'}
    _write(tmp_path, files)
    for fmt in ("text", "json", "github"):
        res = cli("validate", str(tmp_path), "-f", fmt)
        assert res.exit_code == 1
        assert secret not in res.stdout + res.stderr, fmt
    text = cli("validate", str(tmp_path)).stdout
    assert "yaml-syntax" in text and "2 | token: ***" in text
    _write(tmp_path, {"svc/schema.yaml": "port: {type: integer}\n"})  # no secrets: line shown
    assert secret in cli("validate", str(tmp_path)).stdout


def test_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    res = cli("validate", str(tmp_path / "nope"))
    assert res.exit_code == 2
    assert "not a directory" in res.stderr
    assert res.stdout == ""


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    bad = "database:\n  host: db\n  pool_size: 0\n_x: 1\nb: 1\nb: 2\n"
    _write(tmp_path, {"svc/schema.yaml": COMPACT, "svc/prod.yaml": bad})
    report = cli("validate", str(tmp_path), "-f", "json").json()
    codes = sorted(p["code"] for p in report["problems"])
    assert codes == ["duplicate-key", "reserved-key", "schema", "unknown-key"]  # `b`: closed


def test_ignored_and_non_service_directories(tmp_path: Path) -> None:
    _write(tmp_path, {
        ".gitconf.yaml": "ignore: [Tools]\n",
        "Tools/build.yaml": "steps: []\n",
        "_drafts/prod.yaml": "x: 1\n",
        ".github/workflows/ci.yaml": "on: push\n",
        "svc/prod.yaml": "a: 1\n",
        "svc/README.md": "docs",
        "README.md": "hello",
    })
    res = cli("validate", str(tmp_path), "-f", "json")
    assert res.exit_code == 0, res.stdout
    assert res.json()["keys"] == 1


def test_json_document_is_alone_on_stdout(tmp_path: Path) -> None:
    _write(tmp_path, {"svc/prod.yaml": "a: 1\n"})
    res = cli("validate", str(tmp_path), "-f", "json")
    assert json.loads(res.stdout) == {"valid": True, "files": 1, "keys": 1, "units": 1,
                                      "problems": []}


def test_a_large_repository_is_checked_in_workers_with_the_same_report(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """From PARALLEL_SERVICES services on, validate spreads the services over worker
    processes: its report is the one a check in process gives, problem for problem."""
    from gitconf.loading import PARALLEL_SERVICES
    from gitconf.trees import FileTree
    from gitconf.validation import validate_tree

    for i in range(PARALLEL_SERVICES):
        _write(tmp_path, {f"svc{i:03d}/prod.yaml": f"a: {i}\nb: {{c: x}}\n"})
    for n, (files, *_) in enumerate(CASES.values()):
        if all(rel.startswith("svc/") for rel in files):  # one bad service per case
            _write(tmp_path, {f"bad{n:02d}/" + rel[4:]: c for rel, c in files.items()})
    with caplog.at_level("WARNING", logger="gitconf"):
        res = cli("validate", str(tmp_path), "-f", "json")
    assert "parallel loading unavailable" not in caplog.text  # the workers did the checking
    assert res.exit_code == 1
    report = res.json()
    assert report == validate_tree(FileTree(tmp_path)).as_json()
    assert report["units"] >= PARALLEL_SERVICES and report["keys"] >= 2 * PARALLEL_SERVICES
    assert {p["file"].split("/")[0] for p in report["problems"]} >= {"bad00", "bad30"}
