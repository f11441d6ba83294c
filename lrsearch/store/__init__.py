"""Storage: every query of the dashboard, the CLI, the runner and its workers.

- `writes`: a new search, cancels, crashes, re-queues, heartbeats (short session transactions);
- `claims`: the runner taking queued trials, one atomic update each;
- `attempts`: a worker recording its trial's start, each epoch and its end;
- `reads`: what pages, API, CLI, ranking and plots read;
- `fast`, `transactions`, `settle`: the prepared-statement path, retries on a busy
  database and the engines of runner and workers, and ending a search with its last trial.
"""

from lrsearch.store.attempts import begin_attempt, finish_trial, write_epoch
from lrsearch.store.claims import claim_trials
from lrsearch.store.reads import nothing_left
from lrsearch.store.transactions import process_engine, retry_transaction
from lrsearch.store.writes import (
    Refused,
    cancel_search,
    cancel_trial,
    delete_search,
    insert_search,
    record_crash,
    requeue_interrupted,
    stale_bound,
    take_pending_plots,
    touch_heartbeats,
)

__all__ = [
    "Refused",
    "begin_attempt",
    "cancel_search",
    "cancel_trial",
    "delete_search",
    "claim_trials",
    "insert_search",
    "finish_trial",
    "nothing_left",
    "process_engine",
    "record_crash",
    "requeue_interrupted",
    "retry_transaction",
    "stale_bound",
    "take_pending_plots",
    "touch_heartbeats",
    "write_epoch",
]
