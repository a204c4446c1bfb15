"""The submission ledger: every paid request the app sent, and what became of it.

One row per press of Extend that reached the network, written *before* the request
leaves (outcome "sending") and settled right after it:

- "started": Kie answered with a task id (the task itself lives in the task store);
- "refused": Kie answered with a failure code: nothing was started;
- "unknown": the request was sent but its answer was lost (read timeout, connection
  reset). Kie may or may not have started, and charged for, a task. The app never
  sends it again by itself; the row stays in the person's history with advice until
  they dismiss it, and sending the same request again needs an explicit confirmation.

The same rows count a visitor's submissions on the host's key (KIE_VISITOR_QUOTA),
on the server: a reservation is taken in one INSERT ... SELECT that only inserts while
the visitor is under the quota, so two tabs cannot both slip under it. "sending",
"started" and "unknown" count (each may have been charged); "refused" does not.

Lives in the task store's database (its own table, created on first use).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from studio.store import TaskStore, redact_request

CHARGED = ("sending", "started", "unknown")

_metadata = sa.MetaData()

submissions = sa.Table(
    "submissions",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("visitor_id", sa.String(200), nullable=False),
    sa.Column("sent_at", sa.Double, nullable=False),
    sa.Column("key_source", sa.String(10), nullable=False),  # host | visitor | sandbox
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(10), nullable=False),
    sa.Column("task_id", sa.String(200)),
    sa.Column("detail", sa.Text),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("dismissed", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_submissions_visitor", "visitor_id", "sent_at"),
)


@dataclass(frozen=True)
class Submission:
    """One ledger row as a page shows it."""

    id: int
    sent_at: datetime
    outcome: str
    title: str | None
    detail: str | None


class QuotaExceeded(Exception):
    """The visitor has used every submission the host's quota allows."""

    def __init__(self, quota: int) -> None:
        super().__init__(f"quota of {quota} reached")
        self.quota = quota


class SubmissionLedger:
    """The submissions table of one task store's database."""

    def __init__(self, store: TaskStore) -> None:
        self._engine = store.engine
        with self._engine.begin() as conn:
            _metadata.create_all(conn)

    def reserve(
        self,
        *,
        visitor_id: str,
        key_source: str,
        fingerprint: str,
        request: dict[str, Any],
        quota: int | None = None,
    ) -> int:
        """Note a request about to be sent; returns its row id. With `quota` (host-key
        sends only), raises QuotaExceeded instead when the visitor is at the limit."""
        values = {
            "visitor_id": visitor_id,
            "sent_at": time.time(),
            "key_source": key_source,
            "fingerprint": fingerprint,
            "outcome": "sending",
            "task_id": None,
            "detail": None,
            "request": redact_request(request),
            "dismissed": False,
        }
        with self._engine.begin() as conn:
            if quota is None:
                return int(conn.execute(submissions.insert(), values).inserted_primary_key[0])
            used = _charged_on_host(visitor_id).scalar_subquery()
            # One statement: the count and the insert cannot be split by another writer.
            chosen = sa.select(
                *(sa.literal(value, submissions.c[name].type).label(name)
                  for name, value in values.items())
            ).where(used < quota)
            result = conn.execute(submissions.insert().from_select(list(values), chosen))
            if result.rowcount != 1:
                raise QuotaExceeded(quota)
            row_id = conn.execute(
                sa.select(sa.func.max(submissions.c.id)).where(
                    submissions.c.visitor_id == visitor_id
                )
            ).scalar_one()
            return int(row_id)

    def settle(self, row_id: int, outcome: str, *, task_id: str | None = None,
               detail: str | None = None) -> None:
        """Record what became of a reserved request."""
        with self._engine.begin() as conn:
            conn.execute(
                submissions.update()
                .where(submissions.c.id == row_id)
                .values(outcome=outcome, task_id=task_id, detail=(detail or None) and detail[:500])
            )

    def used(self, visitor_id: str) -> int:
        """Submissions this visitor sent on the host's key that may have been charged."""
        stmt = _charged_on_host(visitor_id)
        with self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def unknown(self, visitor_id: str, fingerprint: str | None = None) -> list[Submission]:
        """This visitor's undismissed requests whose outcome is unknown, newest first
        (only those of one request when `fingerprint` is given)."""
        stmt = sa.select(submissions).where(
            submissions.c.visitor_id == visitor_id,
            submissions.c.outcome == "unknown",
            submissions.c.dismissed.is_(False),
        )
        if fingerprint is not None:
            stmt = stmt.where(submissions.c.fingerprint == fingerprint)
        stmt = stmt.order_by(submissions.c.sent_at.desc()).limit(20)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [
            Submission(
                id=row["id"],
                sent_at=datetime.fromtimestamp(row["sent_at"], UTC),
                outcome=row["outcome"],
                title=(row["request"] or {}).get("title") or (row["request"] or {}).get("audioId"),
                detail=row["detail"],
            )
            for row in rows
        ]

    def dismiss(self, visitor_id: str, row_id: int) -> None:
        """Hide an unknown-outcome notice (it still counts towards the quota)."""
        with self._engine.begin() as conn:
            conn.execute(
                submissions.update()
                .where(submissions.c.id == row_id, submissions.c.visitor_id == visitor_id)
                .values(dismissed=True)
            )


def _charged_on_host(visitor_id: str) -> sa.Select[tuple[int]]:
    """How many of this visitor's requests on the host's key may have been charged."""
    return (
        sa.select(sa.func.count())
        .select_from(submissions)
        .where(
            submissions.c.visitor_id == visitor_id,
            submissions.c.key_source == "host",
            submissions.c.outcome.in_(CHARGED),
        )
    )
