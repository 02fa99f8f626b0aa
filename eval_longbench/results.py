"""Incremental, resumable result files: one JSON object, rewritten atomically after every record.

An interrupted run leaves a valid file holding every finished record; the rerun loads it and skips
those keys. A file written for different settings is refused rather than silently mixed.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from longctx.errors import LongctxError
from longctx.io import atomic_write_json


class ResultStore:
    """``{"meta": {...}, "records": {key: record}}`` at ``path``, saved after each :meth:`put`.

    ``meta`` holds the settings that make records comparable (task, seed, ...). Reopening with a
    different ``meta`` raises, naming the first differing field, unless ``overwrite`` is set.
    """

    def __init__(self, path: str | Path, meta: dict[str, Any], *, overwrite: bool = False):
        self.path = Path(path)
        self.meta = json.loads(json.dumps(meta))  # normalise tuples etc. to what JSON gives back
        self.records: dict[str, Any] = {}
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

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str, default: Any = None) -> Any:
        return self.records.get(key, default)

    def put(self, key: str, record: Any) -> None:
        """Store one record and rewrite the file atomically (thread-safe)."""
        with self._lock:
            self.records[key] = record
            self.save()

    def save(self) -> None:
        atomic_write_json(self.path, {"meta": self.meta, "records": self.records})
