"""store.reads: the searches list in a fixed number of statements, agreeing with the
one-search answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from lrsearch.extensions import db
from lrsearch.models import CANCELLED, COMPLETED, DIVERGED, FAILED, RUNNING, Search
from lrsearch.search import ranking
from lrsearch.store import reads


@contextmanager
def counting_statements() -> Iterator[list[str]]:
    """Every SQL statement the app's engine sends while the block runs."""
    sent: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def statements_of(action: Callable[[], object]) -> int:
    db.session.expire_all()
    with counting_statements() as sent:
        action()
    return len(sent)


@pytest.mark.parametrize("surface", ["page", "api", "cli"])
def test_the_searches_list_takes_as_many_statements_for_50_searches_as_for_1(
    app, client, cli, make_search, surface
):
    def show_the_list() -> None:
        if surface == "page":
            assert client.get("/").status_code == 200
        elif surface == "api":
            assert len(client.get("/api/searches").get_json()["searches"]) == searches
        else:
            result = cli.invoke(args=["lrsearch", "list"])
            assert result.exit_code == 0, result.output
            assert len(result.output.splitlines()) == searches + 1

    make_search(trials=2, epochs=2)
    searches = 1
    show_the_list()  # the first request pays for what is set up once
    one = statements_of(show_the_list)
    for _ in range(49):
        make_search(trials=2, epochs=2)
    searches = 50
    assert statements_of(show_the_list) == one


def test_the_lists_best_trials_are_the_ranking_answers(app, make_search):
    """One window over every search gives each search's best trial as its own query does."""
    plain = make_search(trials=4, epochs=3)
    mixed = make_search(trials=5, epochs=3, diverge=4)
    trials = mixed.trials
    trials[0].status, trials[0].best_val_acc = FAILED, 0.99  # never an answer
    trials[1].status = CANCELLED
    trials[2].status = RUNNING
    trials[3].best_val_acc = trials[2].best_val_acc  # a tie: the lower rate wins
    nothing = make_search(trials=2, epochs=2)
    for trial in nothing.trials:
        trial.status = DIVERGED
    db.session.commit()
    listed = {x.search.id: x.best for x in ranking.list_searches(db.session)}
    for search in (plain, mixed, nothing):
        alone = ranking.best_trial(db.session, search.id)
        assert (listed[search.id] is None) == (alone is None)
        if alone is not None:
            assert listed[search.id].id == alone.id
            assert listed[search.id]._asdict() | {"search_id": None} == alone._asdict() | {
                "search_id": None
            }
    assert listed[nothing.id] is None
    assert ranking.best_trial(db.session, mixed.id).id in {trials[2].id, trials[3].id}


def test_the_lists_totals_are_each_searchs_own(app, make_search):
    searches = [make_search(trials=n, epochs=2) for n in (1, 3)]
    empty = Search.from_spec(searches[0].spec(), status=COMPLETED)
    db.session.add(empty)
    db.session.commit()
    listed = {x.search.id: x.totals for x in ranking.list_searches(db.session, newest_first=False)}
    for search in searches:
        assert listed[search.id] == reads.trial_totals(db.session, search.id)
        assert listed[search.id].total_epochs() == 2 * search.n_trials
    assert listed[empty.id] == reads.trial_totals(db.session, empty.id) == reads.TrialTotals()
