"""Incremental, resumable result files: one JSON object, rewritten atomically after every record.

An interrupted run leaves a valid file holding every finished record; the rerun loads it and skips
those keys. A file written for different settings is refused rather than silently mixed.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from longctx.core.errors import LongctxError
from longctx.core.io import atomic_write_json


class ResultStore:
    """``{"meta": {...}, "records": {key: record}}`` at ``path``, saved after each :meth:`put`.

    ``meta`` holds the settings that make records comparable (task, seed, text hash, ...). Reopening
    with a different ``meta`` raises, naming the first differing field, unless ``overwrite`` is set.
    ``models`` maps each model name to its content fingerprint (:meth:`bind_model`), so a different
    checkpoint under the same name is refused the same way.
    """

    def __init__(self, path: str | Path, meta: dict[str, Any], *, overwrite: bool = False):
        self.path = Path(path)
        self.meta = json.loads(json.dumps(meta))  # normalise tuples etc. to what JSON gives back
        self.records: dict[str, Any] = {}
        self.models: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path.exists() and not overwrite:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise LongctxError(f"{self.path}: not a valid results file ({e}); move it away or pass --overwrite") from None
            if not isinstance(data, dict) or not isinstance(data.get("records"), dict):
                raise LongctxError(f"{self.path}: records: missing; not a longctx results file (pass --overwrite)")
            old = data.get("meta", {})
            for k in sorted(set(old) | set(self.meta)):
                if old.get(k) != self.meta.get(k):
                    raise LongctxError(
                        f"{self.path}: meta.{k}: this file was written with {old.get(k)!r}, now {self.meta.get(k)!r}; "
                        "use another --out or pass --overwrite"
                    )
            self.records = data["records"]
            self.models = data["models"] if isinstance(data.get("models"), dict) else {}

    def bind_model(self, name: str, fingerprint: str) -> None:
        """Record that ``name``'s results come from the checkpoint with ``fingerprint``; raise when
        this file already holds ``name`` from other content (other weights, config or tokenizer)."""
        with self._lock:
            old = self.models.get(name)
            if old is not None and old != fingerprint:
                raise LongctxError(
                    f"{self.path}: meta.models.{name}: this file was written with {old!r}, now {fingerprint!r} "
                    "(another checkpoint under the same name); use another --out or --names, or pass --overwrite"
                )
            if old is None:
                self.models[name] = fingerprint
                self.save()

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str, default: Any = None) -> Any:
        return self.records.get(key, default)

    def put(self, key: str, record: Any) -> None:
        """Store one record and rewrite the file atomically (thread-safe)."""
        with self._lock:
            self.records[key] = record
            self.save()

    def put_outcome(self, kind: str, key: str, record: Any, *, failed: bool) -> None:
        """Store a finished item under ``kind/key``, or a failed one under ``fail/key`` (to be retried
        by the next run: it is not a result); a success clears the item's earlier failure."""
        with self._lock:
            if failed:
                self.records[f"fail/{key}"] = record
            else:
                self.records.pop(f"fail/{key}", None)
                self.records[f"{kind}/{key}"] = record
            self.save()

    def save(self) -> None:
        atomic_write_json(self.path, {"meta": self.meta, "models": self.models, "records": self.records})
