"""The follow-up pull request of an override (SPEC §5): Git must end up the source of truth.

One branch per unit, `gitconf/override/<service>/<environment>`, built in a scratch repository
from the base branch (or on top of the branch when it exists: a second override adds a commit,
a person's commits stay). The environment file is edited in place (`yamledit`: only the
overridden lines change), re-read, and must flatten to exactly the values etcd holds before
anything is pushed. The commit's author is the person who overrode; gitconf is the committer.
Then one pull request through the GitHub API, found, created or updated: never a second one.

No token, no GitHub repository, `--no-pr`, or GitHub down: the branch is still pushed where
possible and the result says what to open by hand; the override stands either way, and the
daemon retries a pending pull request later (`pr_pending` in the record).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import GitconfError
from .fastclass import dataclass
from .gitsource import GitSource
from .livestate import read_unit
from .model import JSON
from .overrides import UNSET, held_edits, set_pull_request, values_with
from .plan import canon
from .reconcile import PullRequestFate
from .records import Keys, OverrideRecord, PullRequestRef
from .repo_format import load_values, merge_base, read_settings
from .store import Store

if TYPE_CHECKING:  # pushing and editing files: imported by the few passes that open a PR
    from .gitpush import Scratch
    from .yamledit import Unset

log = logging.getLogger("gitconf")
DEFAULT_LABELS = ("gitconf", "override")
CANCEL_HINT = "gitconf overrides cancel {service} {environment} --reason '...'"


@dataclass
class FollowUp:
    """What happened to an override's follow-up: the branch pushed, the pull request, or why
    there is none (and what to do by hand)."""

    record: OverrideRecord
    pushed: bool = False
    pull_request: PullRequestRef | None = None
    note: str | None = None  # no pull request: why, and what to open
    pending: bool = False  # GitHub failed: the daemon tries again

    def as_json(self) -> dict[str, Any]:
        return {"branch": self.record.branch, "pushed": self.pushed,
                "pull_request": self.pull_request.as_dict() if self.pull_request else None,
                "note": self.note, "pending": self.pending}


class FollowUpError(GitconfError):
    exit_code = 1


def author_of(who: str) -> tuple[str, str]:
    """A commit author from an actor: `Ann <ann@x.io>`, an e-mail, or `user@host`."""
    if "<" in who and who.endswith(">"):
        name, _, email = who[:-1].partition("<")
        return name.strip() or email, email.strip()
    return who.split("@", 1)[0] or who, who if "@" in who else f"{who}@users.noreply.gitconf"


def edit_branch(scratch: Scratch, record: OverrideRecord, values: Mapping[str, JSON | None],
                unset: set[str]) -> str | None:
    """Edit the unit's environment file in the scratch repository and commit; None when the
    file already says it all. Raises FollowUpError when the edit cannot say exactly what etcd
    holds (a key only `_base.yaml` sets cannot be removed from the environment file)."""
    from .yamledit import EditError, apply_edits

    svc, env = record.service, record.environment
    path = next((p for p in (f"{svc}/{env}.yaml", f"{svc}/{env}.yml")
                 if scratch.read(p) is not None), f"{svc}/{env}.yaml")
    raw = scratch.read(path) or b""
    base_path = next((p for p in (f"{svc}/_base.yaml", f"{svc}/_base.yml")
                      if scratch.read(p) is not None), None)
    base_raw = scratch.read(base_path) if base_path else None
    text = raw.decode("utf-8")
    edits: dict[str, JSON | Unset] = {k: v for k, v in values.items() if k not in unset}
    env_values = load_values(path, raw).values
    for key in unset:
        if key in env_values:
            edits[key] = UNSET
    try:
        edited = apply_edits(text, edits, file=path) if edits else text
    except EditError as exc:
        raise FollowUpError(f"cannot edit {path} for override {record.id}: {exc}") from None
    _verify(path, edited, base_path, base_raw, raw, values, unset)
    if edited == text:
        return None
    scratch.write(path, edited.encode("utf-8"))
    name, email = author_of(record.by)
    return scratch.commit(_message(record), name, email, {"Gitconf-Override": record.id})


def _verify(path: str, edited: str, base_path: str | None, base_raw: bytes | None,
            raw: bytes, values: Mapping[str, JSON | None], unset: set[str]) -> None:
    """The edited file, merged with `_base.yaml`, must give exactly the override's values and
    leave every other key as it was."""
    from .repo_format import Values

    base = load_values(base_path, base_raw) if base_path and base_raw is not None else \
        Values({}, {}, [])
    before, _ = merge_base(base, load_values(path, raw))
    after_values = load_values(path, edited.encode("utf-8"))
    if after_values.problems:
        p = after_values.problems[0]
        raise FollowUpError(f"the edited {path} is not valid ({p.line}:{p.column} {p.message})")
    after, _ = merge_base(base, after_values)
    wanted = values_with(before, [])
    for key, value in values.items():
        if key not in unset:
            wanted[key] = value
    for key in unset:
        wanted.pop(key, None)
    if canon(after) != canon(wanted):
        stuck = sorted(k for k in set(after) | set(wanted)
                       if k not in after or k not in wanted or canon(after[k]) != canon(wanted[k]))
        raise FollowUpError(f"{path} cannot express the override exactly ({', '.join(stuck)}: "
                            "a key only _base.yaml sets cannot be removed per environment); "
                            "edit it by hand")


def _message(record: OverrideRecord) -> str:
    keys = ", ".join(k.key for k in record.keys)
    return (f"Override {record.service}/{record.environment}: {keys}\n\n"
            f"{record.reason}\n\nMade live in etcd by {record.by} at {record.created_at} "
            f"(gitconf override {record.id}).")


def pr_title(record: OverrideRecord) -> str:
    what = "Drift" if record.source == "drift" else "Override"
    return f"{what} {record.service}/{record.environment}: " + \
        ", ".join(k.key for k in record.keys)[:120]


def pr_body(record: OverrideRecord) -> str:
    """What a reviewer needs to act: who, why, when, old → new (masked), the revision, the
    TTL, and how to cancel. Values are taken from the record, which holds them masked."""
    import json

    def shown(v: JSON) -> str:
        return "`" + json.dumps(v, ensure_ascii=False).replace("`", "'")[:200] + "`"

    rows = "\n".join(
        f"| `{k.key}` | {shown(k.old)} | {'(removed)' if k.unset else shown(k.new)} | "
        f"{k.revision} |" for k in record.keys)
    ttl = f"expires at **{record.expires_at}** (the keys then return to Git)" \
        if record.expires_at else "no TTL: it stays until merged, closed or cancelled"
    cancel = CANCEL_HINT.format(service=record.service, environment=record.environment)
    return (f"An emergency {'drift' if record.source == 'drift' else 'override'} of "
            f"**{record.service}/{record.environment}** is live in etcd now; this pull "
            f"request brings Git in line with it.\n\n"
            f"- **Who:** {record.by}\n- **Why:** {record.reason}\n"
            f"- **When:** {record.created_at}\n- **Override:** `{record.id}`, {ttl}\n\n"
            f"| key | in Git | in etcd now | etcd revision |\n|---|---|---|---|\n{rows}\n\n"
            "Merging this closes the override and the next deploy gives the keys Git's "
            "provenance back. Closing it unmerged returns the keys to Git's values. To cancel "
            f"now: `{cancel}`.\n\n<!-- gitconf-override {record.id} -->\n")


def open_follow_up(source: GitSource, store: Store, keys: Keys, record: OverrideRecord,
                   base_branch: str, settings: Mapping[str, Any], no_pr: bool = False,
                   github: Any = None) -> FollowUp:
    """Push the branch and open or update the pull request; record it in the override."""
    live = read_unit(store, keys, record.unit)
    if live.override is None or live.override.id != record.id:
        return FollowUp(record, note="the override is no longer open")
    record = live.override
    values: dict[str, JSON | None] = {}
    unset: set[str] = set()
    for e in held_edits(live):
        if e.value is UNSET:
            unset.add(e.key)
        else:
            values[e.key] = e.value
    result = FollowUp(record)
    from .gitpush import push_with_rebuild

    try:
        push_with_rebuild(source, base_branch, record.branch,
                          lambda s: edit_branch(s, record, values, unset))
        result.pushed = True
    except GitconfError as exc:
        result.note = f"branch {record.branch} not pushed: {exc}"
        _remember(result, set_pull_request(store, keys, record, None, False, result.note))
        return result
    _pull_request(result, source, store, keys, base_branch, settings, no_pr, github)
    return result


def _pull_request(result: FollowUp, source: GitSource, store: Store, keys: Keys,
                  base_branch: str, settings: Mapping[str, Any], no_pr: bool,
                  github: Any) -> None:
    from . import github as gh

    record = result.record
    client = github
    if client is None and not no_pr:
        repo = github_repo(source, settings)
        client = gh.from_env(repo) if repo else None
        if repo is None:
            result.note = "no GitHub repository is known (`github:` in .gitconf.yaml)"
        elif client is None:
            result.note = "no GITHUB_TOKEN"
    if no_pr or client is None:
        why = "--no-pr" if no_pr else result.note
        result.note = (f"{why}: open a pull request from {record.branch} to {base_branch} "
                       "by hand")
        _remember(result, set_pull_request(store, keys, record, PullRequestRef(record.branch),
                                           False, result.note))
        return
    labels = tuple(settings.get("pull_requests", {}).get("labels", DEFAULT_LABELS))
    try:
        pr = client.ensure_pull(record.branch, base_branch, pr_title(record), pr_body(record),
                                labels)
    except GitconfError as exc:
        result.pending = True
        result.note = f"GitHub: {exc}; the daemon will try again"
        _remember(result, set_pull_request(store, keys, record, PullRequestRef(record.branch),
                                           True, result.note))
        return
    result.pull_request = PullRequestRef(record.branch, pr.number, pr.url)
    _remember(result, set_pull_request(store, keys, record, result.pull_request, False, None))
    log.info("override %s: pull request %s", record.id, pr.url)


def _remember(result: FollowUp, updated: OverrideRecord | None) -> None:
    if updated is not None:
        result.record = updated


def github_repo(source: GitSource, settings: Mapping[str, Any]) -> str | None:
    """`owner/name` from `.gitconf.yaml` `github:`, else from the remote URL."""
    from . import github as gh
    from .gitpush import default_remote

    configured = settings.get("github")
    if isinstance(configured, str) and configured:
        return configured
    try:
        url = default_remote(source).url
    except GitconfError:
        return None
    return gh.repo_from_remote(url) if url else None


def settings_at(source: GitSource, ref: str) -> dict[str, Any]:
    """The repository settings at a commit: only `.gitconf.yaml` is read."""
    return read_settings(source.tree(source.resolve(ref)))


def base_branch(source: GitSource, settings: Mapping[str, Any], explicit: str | None = None,
                ) -> str:
    """The branch follow-up pull requests target: `--base`, else `.gitconf.yaml`
    `pull_requests.base`, else the branch the repository is on, else main."""
    configured = settings.get("pull_requests", {}).get("base")
    return str(explicit or configured or source.current_branch() or "main")


def pull_request_state(client: Any, record: OverrideRecord) -> PullRequestFate | None:
    """The pull request's state ("open", "merged", "closed") and head commit; None when it
    cannot be told now."""
    if record.pull_request is None or record.pull_request.number is None:
        return None
    try:
        pr = client.get_pull(record.pull_request.number)
    except GitconfError as exc:
        log.warning("override %s: cannot read its pull request: %s", record.id, exc)
        return None
    state = "merged" if pr.merged else ("closed" if pr.state == "closed" else "open")
    return PullRequestFate(state, pr.head_sha or None)


def close_pull_request(client: Any, record: OverrideRecord) -> None:
    """An expired or cancelled override closes its pull request, with a comment."""
    if client is None or record.pull_request is None or record.pull_request.number is None:
        return
    number = record.pull_request.number
    try:
        client.comment(number, f"gitconf: override `{record.id}` {record.state} "
                               f"({record.closed_reason}); the keys are back to Git's values.")
        client.close_pull(number)
    except GitconfError as exc:
        log.warning("override %s: could not close pull request #%d: %s", record.id, number,
                    exc)



class PullRequests:
    """The GitHub side of overrides for one command or one daemon: the fate of each open
    override's pull request (asked at most once per `min_interval` seconds per override),
    pull requests for overrides a pass opened (drift under `pr`), and closing the pull request
    of an expired override."""

    def __init__(self, source: GitSource, store: Store, keys: Keys,
                 settings: Mapping[str, Any] | None = None, base_branch: str | None = None,
                 min_interval: float = 0.0, client: Any = None, ref: str = "HEAD"):
        self.source, self.store, self.keys = source, store, keys
        self._settings, self._branch = settings, base_branch
        self.min_interval = min_interval
        self._client = client
        self._ref = ref
        self._asked: dict[str, tuple[float, PullRequestFate | None]] = {}
        self._forgotten = 0  # bumped by `forget`: an answer asked for before it is not kept

    def at(self, ref: str) -> PullRequests:
        """Settings are those of `ref`, read only when a pull request needs them (a daemon
        cycle with no override to follow reads nothing); what GitHub said is kept."""
        if ref != self._ref:
            self._ref, self._settings = ref, None
        return self

    @property
    def settings(self) -> Mapping[str, Any]:
        if self._settings is None:
            self._settings = settings_at(self.source, self._ref)
        return self._settings

    @property
    def base(self) -> str:
        """The branch pull requests target: the one given (the daemon's), else the settings'."""
        return self._branch or base_branch(self.source, self.settings)

    @property
    def client(self) -> Any:
        if self._client is None:
            from . import github as gh

            repo = github_repo(self.source, self.settings)
            self._client = (gh.from_env(repo) if repo else None) or False
        return self._client or None

    def state(self, record: OverrideRecord) -> PullRequestFate | None:
        import time

        now = time.monotonic()
        asked = self._asked.get(record.id)
        if asked is not None and now - asked[0] < self.min_interval:
            return asked[1]
        client = self.client
        generation = self._forgotten
        fate = pull_request_state(client, record) if client is not None else None
        if generation == self._forgotten:  # no webhook arrived while GitHub was asked
            self._asked[record.id] = (now, fate)
        return fate

    def forget(self, override_id: str | None = None) -> None:
        """A webhook said a pull request changed: ask GitHub again at the next pass (about
        that override, or with None about every one). It may arrive while a pass is asking
        GitHub (the webhook is served on another thread): that answer may predate the change,
        so it is not kept."""
        self._forgotten += 1
        if override_id is None:
            self._asked.clear()
        else:
            self._asked.pop(override_id, None)

    def after(self, result: Any) -> list[FollowUp]:
        """Follow up what a reconcile pass did to overrides."""
        done = []
        for record in result.new_overrides:
            done.append(open_follow_up(self.source, self.store, self.keys, record, self.base,
                                       self.settings, github=self.client))
        for record in result.closed_overrides:
            self._asked.pop(record.id, None)
            if record.state == "expired":
                close_pull_request(self.client, record)
        return done

    def retry_pending(self, records: list[OverrideRecord]) -> list[FollowUp]:
        """Overrides whose pull request could not be opened (GitHub was down): try again."""
        return [open_follow_up(self.source, self.store, self.keys, r, self.base, self.settings,
                               github=self.client) for r in records if r.pr_pending]
