"""What a restore says once done: its own counts, then ``verify``'s findings,
each read for what it means after a restore.

* a complete transfer ``missing`` or ``tampered``: lost; the restore failed
  for it (exit 1), and its sender must send it again;
* an upload in progress at the backup, ``missing``: its parts did not come
  back (S3 keeps no versions of them), expected; ``sealdrop-relay verify
  --repair`` rolls it back and its sender resumes (one that is only
  ``trailing`` survived in the bucket: verify's information, nothing to do);
* an orphan: a blob of a transfer the backup does not have (sent after it),
  expected after a restore in place; gc deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import ops
from .blobs import BlobStore
from .metadata import COMPLETE, SqlMetadataStore
from .pgrestore import RestoreReport


@dataclass(slots=True)
class Checked:
    restore: RestoreReport
    verify: ops.VerifyReport
    lost: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost

    def lines(self) -> list[str]:
        r, m = self.restore, self.restore.manifest
        when = datetime.fromtimestamp(m.taken_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out = [f"restored relay {m.relay_id} as of {when}: {m.transfers} transfer(s); "
               f"{r.current} blob(s) already current, {r.restored} brought back from "
               f"the bucket's versions"]
        out += [f"missing: {x.transfer} sender={x.sender}: {x.why}" for x in r.missing]
        out.append(f"verify: checked {self.verify.checked} transfer(s)")
        out += [f"lost: {tid} (complete at the backup; its sender must send it again)"
                for tid in self.lost]
        out += [f"partial: {tid} (an upload in progress at the backup; `sealdrop-relay verify "
                f"--repair` rolls it back, its sender sends again)" for tid in self.partial]
        out += [f"orphan: {tid} (not in the backup: sent after it; gc deletes it)"
                for tid in self.verify.orphans]
        out.append("restore ok" if self.ok else
                   f"restore incomplete: {len(self.lost)} complete transfer(s) lost")
        return out


async def check(store: SqlMetadataStore, blobs: BlobStore, restored: RestoreReport) -> Checked:
    """``verify`` (no repair) on the restored relay, its findings sorted out."""
    report = await ops.verify(store, blobs, repair=False)
    uploading = {t.id for t in await store.all_transfers() if t.state != COMPLETE}
    out = Checked(restored, report)
    for tid in sorted(set(report.missing + report.tampered)):
        (out.partial if tid in uploading else out.lost).append(tid)
    return out
