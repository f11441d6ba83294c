"""Every read the pages, the API, the CLI, the ranking and the plots make.

Each returns rows or plain values; what a page or the API shows of them is
web/serialize.py's to say. A list of searches takes a fixed number of statements, however
many searches there are.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Row, Select, case, func, select
from sqlalchemy.orm import Session

from lrsearch.models import QUEUED, RUNNING, Epoch, Search, Trial
from lrsearch.store.transactions import retry_transaction

METRICS = ("loss", "acc_train", "val_loss", "acc_val")  # an epoch's numbers, as log.txt has them
# `attempt` last: a page drops a trial's points when a new attempt restarts it.
EPOCH_FIELDS = ("id", "trial_id", "epoch", *METRICS, "seconds", "attempt")
# Enough of a trial to name it in a search's summary.
BRIEF_COLUMNS = (Trial.id, Trial.index, Trial.lr, Trial.best_val_acc, Trial.best_epoch)


@dataclass(frozen=True)
class TrialTotals:
    """A search's trials in aggregate, as one GROUP BY gives them."""

    counts: dict[str, int] = field(default_factory=dict)  # trials per status
    epochs_done: dict[str, int] = field(default_factory=dict)  # finished epochs, per status
    seconds: float = 0.0  # training seconds of the current attempts

    def total_epochs(self) -> int:
        return sum(self.epochs_done.values())


def _totals_query() -> Select:
    return select(
        Trial.search_id,
        Trial.status,
        func.count(),
        func.coalesce(func.sum(Trial.epochs_done), 0),
        func.coalesce(func.sum(Trial.seconds), 0.0),
    ).group_by(Trial.search_id, Trial.status)


def _totals(rows: Sequence[Row]) -> dict[int, TrialTotals]:
    by_search: dict[int, list[Row]] = {}
    for row in rows:
        by_search.setdefault(row[0], []).append(row)
    return {
        search_id: TrialTotals(
            counts={r[1]: r[2] for r in group},
            epochs_done={r[1]: r[3] for r in group},
            seconds=sum(r[4] for r in group),
        )
        for search_id, group in by_search.items()
    }


def trial_totals(session: Session, search_id: int) -> TrialTotals:
    """Counts, epochs and seconds of a search's trials, without loading them."""
    rows = session.execute(_totals_query().where(Trial.search_id == search_id)).all()
    return _totals(rows).get(search_id, TrialTotals())


def ranked_order(tiers: Sequence[Collection[str]]) -> tuple:
    """The ranking's order in SQL: trials by tier of status (the first tier's statuses
    first, any status in none last), then the best validation accuracy, the lower rate."""
    tier = case(*((Trial.status.in_(t), i) for i, t in enumerate(tiers)), else_=len(tiers))
    return tier, Trial.best_val_acc.desc(), Trial.lr.asc()


def best_trial(
    session: Session, search_id: int, statuses: Collection[str], tiers: Sequence[Collection[str]]
) -> Row | None:
    """BRIEF_COLUMNS of the first trial in ranked_order among those in `statuses`, if any."""
    query = (
        select(*BRIEF_COLUMNS)
        .where(
            Trial.search_id == search_id,
            Trial.status.in_(statuses),
            Trial.best_val_acc.is_not(None),
        )
        .order_by(*ranked_order(tiers))
        .limit(1)
    )
    return session.execute(query).first()


def healthiest_trial_id(session: Session, search_id: int, status: str, within: float) -> int | None:
    """The smallest train-validation gap among trials in `status` whose final validation
    accuracy is within `within` of the best final one (ties: the higher accuracy)."""
    done = (
        Trial.search_id == search_id,
        Trial.status == status,
        Trial.final_acc_train.is_not(None),
        Trial.final_val_acc.is_not(None),
    )
    top = select(func.max(Trial.final_val_acc)).where(*done).scalar_subquery()
    query = (
        select(Trial.id)
        .where(*done, Trial.final_val_acc >= top - within)
        .order_by(
            func.abs(Trial.final_acc_train - Trial.final_val_acc),
            Trial.final_val_acc.desc(),
            Trial.lr.asc(),
        )
        .limit(1)
    )
    return session.execute(query).scalar()


def top_trial_ids(
    session: Session, search_id: int, k: int, tiers: Sequence[Collection[str]]
) -> list[int]:
    """The first k trials in ranked_order that have a best validation accuracy."""
    best = (
        select(Trial.id)
        .where(Trial.search_id == search_id, Trial.best_val_acc.is_not(None))
        .order_by(*ranked_order(tiers))
        .limit(k)
    )
    return list(session.execute(best).scalars())


@dataclass(frozen=True)
class SearchListing:
    """One search of a list, with what its summary shows."""

    search: Search
    totals: TrialTotals
    best: Row | None  # BRIEF_COLUMNS of its best trial


@dataclass(frozen=True)
class SearchFilter:
    """Which searches a list shows: a part of the name (any case), a data set, a status."""

    name: str = ""
    dataset: str = ""
    status: str = ""

    def conditions(self) -> list:
        found = []
        if self.name:
            escaped = self.name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            found.append(Search.name.ilike(f"%{escaped}%", escape="\\"))
        if self.dataset:
            found.append(Search.dataset == self.dataset)
        if self.status:
            found.append(Search.status == self.status)
        return found


EVERY_SEARCH = SearchFilter()


def dataset_names(session: Session) -> list[str]:
    """The data sets searches were made on, for the list's filter."""
    return list(session.scalars(select(Search.dataset).distinct().order_by(Search.dataset)))


def count_searches(session: Session, where: SearchFilter = EVERY_SEARCH) -> int:
    """How many searches the filter lets through."""
    return session.scalar(select(func.count()).select_from(Search).where(*where.conditions()))


def list_searches(
    session: Session,
    statuses: Collection[str],
    tiers: Sequence[Collection[str]],
    newest_first: bool = True,
    where: SearchFilter = EVERY_SEARCH,
    limit: int | None = None,
    offset: int = 0,
) -> list[SearchListing]:
    """The searches (filtered, a page of them) with their totals and their best trial (as
    best_trial), in three statements that read the page's searches' trials only."""
    order = Search.id.desc() if newest_first else Search.id.asc()
    query = select(Search).where(*where.conditions()).order_by(order).offset(offset).limit(limit)
    searches = session.execute(query).scalars().all()
    if not searches:
        return []
    ids = [s.id for s in searches]
    totals = _totals(session.execute(_totals_query().where(Trial.search_id.in_(ids))).all())
    place = (
        func.row_number()
        .over(partition_by=Trial.search_id, order_by=ranked_order(tiers))
        .label("place")
    )
    ranked = (
        select(Trial.search_id, *BRIEF_COLUMNS, place)
        .where(
            Trial.search_id.in_(ids),
            Trial.status.in_(statuses),
            Trial.best_val_acc.is_not(None),
        )
        .subquery()
    )
    columns = [ranked.c[c.key] for c in BRIEF_COLUMNS]
    rows = session.execute(select(ranked.c.search_id, *columns).where(ranked.c.place == 1))
    best = {row.search_id: row for row in rows}  # named as best_trial's rows are
    return [SearchListing(s, totals.get(s.id, TrialTotals()), best.get(s.id)) for s in searches]


def refinements_of(session: Session, search_id: int) -> list[tuple[int, str]]:
    """(id, name) of the searches that refine this one."""
    query = select(Search.id, Search.name).where(Search.parent_id == search_id)
    return [tuple(row) for row in session.execute(query.order_by(Search.id))]


def rate_points(session: Session, search_ids: Sequence[int]) -> list[Row]:
    """(search_id, id, lr, best_val_acc, status) of the searches' trials, by search and rate."""
    query = (
        select(Trial.search_id, Trial.id, Trial.lr, Trial.best_val_acc, Trial.status)
        .where(Trial.search_id.in_(search_ids))
        .order_by(Trial.search_id, Trial.lr)
    )
    return list(session.execute(query))


def curves_of(session: Session, trial_ids: Sequence[int]) -> dict[int, dict[str, list]]:
    """Each trial's current-attempt curve: epoch and METRICS, column by column."""
    query = (
        select(Epoch.trial_id, Epoch.epoch, *(getattr(Epoch, m) for m in METRICS))
        .join(Trial, (Trial.id == Epoch.trial_id) & (Trial.attempt == Epoch.attempt))
        .where(Epoch.trial_id.in_(trial_ids))
        .order_by(Epoch.trial_id, Epoch.epoch)
    )
    curves: dict[int, dict[str, list]] = {}
    for trial_id, *values in session.execute(query):
        curve = curves.setdefault(trial_id, {f: [] for f in ("epoch", *METRICS)})
        for name, value in zip(("epoch", *METRICS), values, strict=True):
            curve[name].append(value)
    return curves


def active_searches(session: Session) -> int:
    """How many searches are queued or running."""
    query = select(func.count()).select_from(Search).where(Search.status.in_((QUEUED, RUNNING)))
    return session.execute(query).scalar_one()


def epochs_done(session: Session, search_id: int) -> int:
    """Finished epochs of the search's current attempts."""
    query = select(func.coalesce(func.sum(Trial.epochs_done), 0)).where(
        Trial.search_id == search_id
    )
    return session.execute(query).scalar_one()


def nothing_left(session: Session, search_id: int | None) -> bool:
    """Whether no trial (of the search, or of any search) is queued or running.

    For the runner: retried as its writes are, on a busy database.
    """
    query = select(func.count()).select_from(Trial).where(Trial.status.in_((QUEUED, RUNNING)))
    if search_id is not None:
        query = query.where(Trial.search_id == search_id)
    return retry_transaction(session, lambda s: s.execute(query).scalar_one()) == 0


def trials_of(session: Session, search_id: int) -> list[Trial]:
    """The search's trials in index order."""
    query = select(Trial).where(Trial.search_id == search_id).order_by(Trial.index)
    return list(session.execute(query).scalars())


def trials_changed(session: Session, search_id: int, since: datetime) -> list[Trial]:
    """Trials of the search whose row changed at or after `since`."""
    query = (
        select(Trial)
        .where(Trial.search_id == search_id, Trial.updated_at >= since)
        .order_by(Trial.index)
    )
    return list(session.execute(query).scalars())


@dataclass(frozen=True)
class EpochColumns:
    """Epochs as columns (EPOCH_FIELDS, in id order), and the epoch id to go on from."""

    columns: dict[str, list]
    last_id: int
    complete: bool


FEW_EPOCHS = 20_000  # new epoch ids (of every search) that a poll reads by id


def epochs_after(
    session: Session,
    search_id: int,
    after: int,
    limit: int = 200_000,
    trial_ids: Sequence[int] | None = None,
) -> EpochColumns:
    """Epochs of the trials' current attempts with id > after, column by column.

    `trial_ids` keeps only those trials' epochs. `last_id` is where to go on from: the last
    row's id while rows are left (`complete` false), then the newest epoch id there was,
    whichever trial's. So a page that draws only some trials' curves fetches them this way
    and polls on from there, skipping the others' epochs until it asks for them whole.
    """
    # Read first, and the rows bounded by it: each statement may see newer commits.
    newest = max(after, session.execute(select(func.max(Epoch.id))).scalar() or 0)
    of_search = Trial.search_id == search_id
    if newest - after <= FEW_EPOCHS and session.get_bind().dialect.name == "sqlite":
        # A poll's few new ids (of any search): read them by id, each one's trial by its
        # key. Else SQLite goes through every trial of the search (50,000 probes).
        of_search = (Trial.search_id + 0) == search_id  # no index on it: SQLite's idiom
    query = (
        select(*(getattr(Epoch, f) for f in EPOCH_FIELDS))
        .join(Trial, (Trial.id == Epoch.trial_id) & (Trial.attempt == Epoch.attempt))
        .where(of_search, Epoch.id > after, Epoch.id <= newest)
        .order_by(Epoch.id)
        .limit(limit)
    )
    if trial_ids is not None:
        query = query.where(Epoch.trial_id.in_(trial_ids))
    rows = session.execute(query).all()
    transposed = zip(*rows, strict=True) if rows else ([] for _ in EPOCH_FIELDS)
    columns = {f: list(column) for f, column in zip(EPOCH_FIELDS, transposed, strict=True)}
    complete = len(rows) < limit
    return EpochColumns(columns, newest if complete else rows[-1][0], complete)


def epochs_of_trial(session: Session, trial_id: int) -> list[Epoch]:
    """Every attempt's epochs of one trial, in order."""
    query = select(Epoch).where(Epoch.trial_id == trial_id).order_by(Epoch.attempt, Epoch.epoch)
    return list(session.execute(query).scalars())


def attempt_history(session: Session, trial: Trial) -> list[dict[str, float]]:
    """The epochs of the trial's current attempt, as a plot draws them."""
    query = (
        select(Epoch.epoch, *(getattr(Epoch, m) for m in METRICS))
        .where(Epoch.trial_id == trial.id, Epoch.attempt == trial.attempt)
        .order_by(Epoch.epoch)
    )
    return [row._asdict() for row in session.execute(query)]


def epoch_rows(session: Session, where) -> Iterator[Row]:
    """Epoch rows of every attempt for CSV (index, lr, attempt, epoch, metrics, seconds),
    streamed from the database."""
    return session.execute(
        select(
            Trial.index,
            Trial.lr,
            Epoch.attempt,
            Epoch.epoch,
            *(getattr(Epoch, m) for m in METRICS),
            Epoch.seconds,
        )
        .join(Trial)
        .where(where)
        .order_by(Trial.index, Epoch.attempt, Epoch.epoch)
        .execution_options(yield_per=5000)
    )
