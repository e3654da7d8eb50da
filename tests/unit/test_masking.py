"""`masking.py`: the one rule for secrets. A secret key, or any key inside a secret group, is
shown as `***` everywhere unless the user asked to see it; a key secret at any earlier deploy
stays masked."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from gitconf.masking import MASK, Masker, shown_change
from gitconf.model import Change, DesiredUnit, LiveKey, LiveUnit, UnitId
from gitconf.plan import plan_unit, unit_masker
from gitconf.records import UnitRecord

U = UnitId("s", "e")


def test_secret_keys_and_groups() -> None:
    m = Masker(frozenset({"db.password", "creds"}))
    assert m.is_secret("db.password") and m.is_secret("creds.token") and m.is_secret("creds")
    assert not m.is_secret("db.host") and not m.is_secret("credsx") and not m.is_secret("db")
    assert m.group_has_secret("db", ["db.host", "db.password"])
    assert not m.group_has_secret("db", ["db.host"])
    assert m.value("creds.token", "t0k") == MASK and m.value("db.host", "h") == "h"
    assert Masker(frozenset({"creds"}), show=True).value("creds.token", "t0k") == "t0k"


def test_changes_are_masked_by_op() -> None:
    m = Masker(frozenset({"k"}))
    assert m.change(Change("k", "add", None, "v")).new == MASK
    assert m.change(Change("k", "add", None, "v")).old is None
    assert m.change(Change("k", "delete", "v", None)).old == MASK
    assert m.change(Change("k", "change", "a", "b"))[2:4] == (MASK, MASK)
    assert shown_change(Change("x", "change", "a", "b", secret=True))[2:4] == (MASK, MASK)
    assert shown_change(Change("x", "change", "a", "b", secret=True), True)[2:4] == ("a", "b")


def test_secret_once_stays_secret() -> None:
    """The schema no longer marks `api.token`, but it was deployed as secret."""
    live = LiveUnit(U, {"api.token": LiveKey("old-secret", b"", 5, None)})
    live.record = UnitRecord(1, "c", "v", "git", "t", "me", 1, ("api.token",))
    desired = DesiredUnit(U, {"api.token": "new-value"}, {}, ("f",))
    (change,) = plan_unit(U, desired, live)
    assert change.secret
    assert unit_masker(desired, live).is_secret("api.token")


keys = st.lists(st.from_regex(r"[a-z]{1,4}(\.[a-z]{1,4}){0,2}", fullmatch=True),
                min_size=1, max_size=6, unique=True)


@given(keys, st.data())
def test_a_masked_render_never_contains_a_secret_value(names: list[str],
                                                        data: st.DataObject) -> None:
    """Property: whatever the keys and which of them are secret, a rendered masked plan does
    not contain any secret value (each secret value is a unique marker string)."""
    secret = frozenset(data.draw(st.lists(st.sampled_from(names), unique=True)))
    old = {k: f"OLD-{i}-SECRETVALUE" if k in secret else i for i, k in enumerate(names)}
    new = {k: f"NEW-{i}-SECRETVALUE" if k in secret else -i for i, k in enumerate(names)}
    live = LiveUnit(U, {k: LiveKey(v, b"", 1, None) for k, v in old.items()
                        if data.draw(st.booleans())})
    desired = DesiredUnit(U, {k: v for k, v in new.items() if data.draw(st.booleans())}, {},
                          ("f",), secret_keys=secret)
    masker = unit_masker(desired, live)
    rendered = json.dumps([masker.change(c) for c in plan_unit(U, desired, live)])
    assert "SECRETVALUE" not in rendered
