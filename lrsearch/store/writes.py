"""The writes of the web app, the CLI and the runner, as short transactions on a session:
a new search, cancels, crashes, re-queues, heartbeats and the plots left for later."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from lrsearch.models import CANCELLED, FAILED, QUEUED, RUNNING, SEARCH_FINAL, Search, Trial, utcnow
from lrsearch.settings import SearchSpec
from lrsearch.store.settle import settle_search
from lrsearch.store.transactions import retry_transaction


def insert_search(
    session: Session,
    spec: SearchSpec,
    trials: Sequence[tuple[float, int]],
    parent_id: int | None = None,
) -> Search:
    """Store a search and its trials, one (learning rate, training seed) each."""
    search = Search.from_spec(spec, status=QUEUED, parent_id=parent_id)
    search.trials = [
        Trial(index=i, lr=lr, seed=seed, status=QUEUED) for i, (lr, seed) in enumerate(trials)
    ]
    session.add(search)
    session.commit()
    return search


def take_pending_plots(session: Session, limit: int, search_id: int | None = None) -> list[int]:
    """Take up to `limit` trials (of one search, or any) whose plot was left for later.

    Each is taken once: of two runners taking at once, each gets only the trials whose flag
    it cleared itself.
    """
    query = select(Trial.id).where(Trial.plot_pending.is_(True))
    if search_id is not None:
        query = query.where(Trial.search_id == search_id)
    query = query.order_by(Trial.id).limit(limit)
    ids = retry_transaction(session, lambda s: s.execute(query).scalars().all())
    if not ids:
        return []
    take = (
        update(Trial)
        .where(Trial.id.in_(ids), Trial.plot_pending.is_(True))
        .values(plot_pending=False)
        .returning(Trial.id)
    )
    return sorted(retry_transaction(session, lambda s: s.execute(take).scalars().all()))


def record_crash(
    session: Session, trial_id: int, attempt: int, error: str, max_attempts: int
) -> str:
    """A worker died or raised: re-queue the trial, or fail it past the retry limit."""

    def work(s: Session) -> str:
        trial = s.get(Trial, trial_id, with_for_update=True)
        if trial is None or trial.attempt != attempt or trial.status != RUNNING:
            return trial.status if trial else FAILED
        trial.crashes += 1
        trial.heartbeat_at = trial.finished_at = utcnow()
        if trial.crashes >= max_attempts:
            trial.status = FAILED
            trial.error = f"{error} (attempt {trial.attempt} of {max_attempts})"
        else:
            trial.status = QUEUED
            trial.error = f"attempt {trial.attempt} crashed: {error}; re-queued"
        s.flush()
        settle_search(s, trial.search_id)
        return trial.status

    return retry_transaction(session, work)


def requeue_interrupted(
    session: Session,
    *,
    older_than: datetime | None = None,
    trial_ids: list[int] | None = None,
    exclude: set[int] = frozenset(),
    max_interruptions: int = 10,
) -> int:
    """Re-queue running trials whose runner is gone (stale heartbeat, or named ones).

    Their epochs stay, tagged with the attempt that wrote them; the next attempt resumes
    from the trial's latest checkpoint (see execution.worker), or starts over and, training
    being seeded, retraces the same curve.
    """
    query = select(Trial).where(Trial.status == RUNNING)
    if older_than is not None:
        query = query.where(Trial.heartbeat_at < older_than)
    if trial_ids is not None:
        query = query.where(Trial.id.in_(trial_ids))

    def work(s: Session) -> int:
        trials = [t for t in s.execute(query).scalars() if t.id not in exclude]
        for trial in trials:
            trial.interruptions += 1
            trial.finished_at = utcnow()
            if trial.search.cancel_requested:
                trial.status = CANCELLED
            elif trial.interruptions > max_interruptions:
                trial.status = FAILED
                trial.error = f"interrupted {trial.interruptions} times"
            else:
                trial.status = QUEUED
                trial.error = f"attempt {trial.attempt} interrupted (runner stopped); re-queued"
        s.flush()
        for search_id in {t.search_id for t in trials}:
            settle_search(s, search_id)
        return len(trials)

    return retry_transaction(session, work)


def touch_heartbeats(session: Session, trial_ids: list[int]) -> None:
    """Mark the runner's running trials alive."""
    if trial_ids:
        retry_transaction(
            session,
            lambda s: s.execute(
                update(Trial)
                .where(Trial.id.in_(trial_ids), Trial.status == RUNNING)
                .values(heartbeat_at=utcnow())
            ),
        )


def cancel_search(session: Session, search_id: int) -> None:
    """Cancel queued trials now; running ones stop at their next epoch boundary."""

    def work(s: Session) -> None:
        s.execute(
            update(Search)
            .where(Search.id == search_id, Search.status.not_in(SEARCH_FINAL))
            .values(cancel_requested=True)
        )
        s.execute(
            update(Trial)
            .where(Trial.search_id == search_id, Trial.status == QUEUED)
            .values(status=CANCELLED, finished_at=utcnow())
        )
        settle_search(s, search_id)

    retry_transaction(session, work)


class Refused(Exception):
    """The change cannot be made in the row's present state; the message says why."""


def cancel_trial(session: Session, trial_id: int) -> Trial | None:
    """Cancel one trial: a queued one now, a running one at its next epoch boundary (its
    epochs kept). None if there is no such trial; Refused if it has ended."""

    def work(s: Session) -> Trial | None:
        trial = s.get(Trial, trial_id, with_for_update=True)
        if trial is None:
            return None
        if trial.status == QUEUED:
            trial.status, trial.finished_at = CANCELLED, utcnow()
            s.flush()
            settle_search(s, trial.search_id)
        elif trial.status == RUNNING:
            trial.cancel_requested = True
        else:
            raise Refused(f"trial {trial_id} already {trial.status}")
        return trial

    return retry_transaction(session, work)


def delete_search(session: Session, search_id: int) -> bool:
    """Delete a search with its trials, epochs and range points, in one transaction (a
    crash leaves all of it or none); False if there is no such search. Refused while a
    trial of it runs. Searches refining it keep their settings, their link to it dropped.
    Its log folder is the caller's to remove, after."""

    def work(s: Session) -> bool:
        search = s.get(Search, search_id, with_for_update=True)
        if search is None:
            return False
        running = s.scalar(
            select(func.count()).where(Trial.search_id == search_id, Trial.status == RUNNING)
        )
        if running:
            raise Refused(
                f"search {search_id} has {running} running trial{'s' if running > 1 else ''}: "
                "cancel it first"
            )
        s.execute(update(Search).where(Search.parent_id == search_id).values(parent_id=None))
        s.execute(delete(Search).where(Search.id == search_id))  # trials, epochs: cascaded
        return True

    return retry_transaction(session, work)


def stale_bound(seconds: float) -> datetime:
    """The heartbeat time before which a running trial counts as abandoned."""
    return utcnow() - timedelta(seconds=seconds)
