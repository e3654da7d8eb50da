"""The etcd key layout (SPEC §3) and gitconf's own records under `{prefix}/_system/`.

Documented in docs/etcd-layout.md; every key gitconf reads or writes is built here.
"""

from __future__ import annotations

import json
from typing import Any

from .model import JSON, UnitId

SYSTEM = "_system"


def dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def loads(raw: bytes) -> Any:
    return json.loads(raw)


class Keys:
    """Key builders for one prefix (default `/config`)."""

    def __init__(self, prefix: str = "/config"):
        stripped = prefix.strip("/")
        self.prefix = "/" + stripped if stripped else ""
        self.root = self.prefix + "/"
        self.system = f"{self.root}{SYSTEM}/"
        self.root_b = self.root.encode()
        self.system_b = self.system.encode()

    # -- data -------------------------------------------------------------------------------
    def unit_prefix(self, unit: UnitId) -> bytes:
        return f"{self.root}{unit.service}/{unit.environment}/".encode()

    def data_key(self, unit: UnitId, key: str) -> bytes:
        return f"{self.root}{unit.service}/{unit.environment}/{key}".encode()

    def parse_data_key(self, raw: bytes) -> tuple[UnitId, str] | None:
        """`/config/svc/env/key` -> (unit, key); None for `_system/` and foreign keys."""
        if not raw.startswith(self.root_b) or raw.startswith(self.system_b):
            return None
        parts = raw[len(self.root_b):].decode("utf-8", "replace").split("/", 2)
        if len(parts) != 3 or not all(parts):
            return None
        return UnitId(parts[0], parts[1]), parts[2]

    # -- records ----------------------------------------------------------------------------
    def _unit_rec(self, kind: str, unit: UnitId) -> bytes:
        return f"{self.system}{kind}/{unit.service}/{unit.environment}".encode()

    def unit_record(self, unit: UnitId) -> bytes:
        return self._unit_rec("units", unit)

    def pending(self, unit: UnitId) -> bytes:
        return self._unit_rec("pending", unit)

    def pin(self, unit: UnitId) -> bytes:
        return self._unit_rec("pins", unit)

    def history_prefix(self, unit: UnitId) -> bytes:
        return self._unit_rec("history", unit) + b"/"

    def history(self, unit: UnitId, deploy: int) -> bytes:
        return self.history_prefix(unit) + f"{deploy:010d}".encode()

    def kind_prefix(self, kind: str) -> bytes:
        return f"{self.system}{kind}/".encode()

    def parse_unit_record_key(self, raw: bytes) -> tuple[str, UnitId] | None:
        """`_system/{kind}/svc/env[/...]` -> (kind, unit) for the per-unit record kinds."""
        if not raw.startswith(self.system_b):
            return None
        parts = raw[len(self.system_b):].decode("utf-8", "replace").split("/")
        if len(parts) >= 3 and parts[0] in ("units", "pending", "pins", "history", "overrides"):
            return parts[0], UnitId(parts[1], parts[2])
        return None

    def schema(self, service: str) -> bytes:
        return f"{self.system}schemas/{service}".encode()

    @property
    def last_applied(self) -> bytes:
        return f"{self.system}last-applied".encode()

    @property
    def leader(self) -> bytes:
        return f"{self.system}leader".encode()

    @property
    def trigger(self) -> bytes:
        return f"{self.system}trigger".encode()


def envelope_suffix(version: str, metadata: dict[str, Any]) -> str:
    """Everything after the value: identical for every key one deploy writes to a unit, so
    it is serialised once and each envelope costs one `json.dumps` of its value."""
    return f',"version":{dumps(version)},"metadata":{dumps(metadata)}}}'


def encode_envelope(value: JSON, suffix: str) -> bytes:
    return ('{"value":' + dumps(value) + suffix).encode("utf-8")


def envelope_from_json(value_json: str, suffix: str) -> bytes:
    """The same envelope from the value's JSON text (the loader encodes values once)."""
    return ('{"value":' + value_json + suffix).encode("utf-8")


def decode_envelope(raw: bytes) -> dict[str, Any] | None:
    """The envelope, or None when the bytes are not one (a foreign write)."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(doc, dict) and "value" in doc and isinstance(doc.get("metadata"), dict):
        return doc
    return None
