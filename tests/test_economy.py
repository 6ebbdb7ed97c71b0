"""The request economy's arithmetic: lookup costs, listing density, and when reading on pays."""

from __future__ import annotations

import pytest

from exporter.economy import Budget, density, lookup_costs, read_on


def test_lookups_cost_one_page_per_room_and_two_without_a_room_id() -> None:
    assert lookup_costs(["r1", "r2", "r1", None]) == [4, 4, 3, 2, 0]
    assert lookup_costs([]) == [0]


def test_density_counts_records_per_second_of_creation_time() -> None:
    assert density([100.0, 90.0, 80.0], newer=None) == pytest.approx(3 / 20)
    assert density([100.0, 90.0, 80.0], newer=110.0) == pytest.approx(3 / 30)
    assert density([50.0, 50.0], newer=None) == 2.0  # one second: the API's timestamp resolution


def test_reading_on_is_chosen_when_the_pages_cost_less_than_the_lookups_they_save() -> None:
    # ten sessions in ten rooms, one page (100 records, 1 per second) back: 1 page beats 10 lookups
    near = [(1000.0 - 10 * i, f"r{i}") for i in range(1, 11)]
    assert read_on(near, oldest=1000.0, rate=1.0, page_size=100, left=50)
    # one session 5 pages back: 5 pages cost more than its one lookup
    assert not read_on([(500.0, "r")], oldest=1000.0, rate=1.0, page_size=100, left=50)
    # the same ten sessions all in one room: one lookup finds them all
    assert not read_on([(c, "same") for c, _ in near], oldest=1000.0, rate=1.0, page_size=100, left=50)
    # two sessions without a room id (two requests each) one page back: reading on pays
    assert read_on([(950.0, None), (940.0, None)], oldest=1000.0, rate=1.0, page_size=100, left=50)


def test_reading_on_never_goes_past_the_budget() -> None:
    near = [(1000.0 - 10 * i, f"r{i}") for i in range(1, 11)]
    assert read_on(near, oldest=1000.0, rate=1.0, page_size=100, left=1)
    assert not read_on(near, oldest=1000.0, rate=1.0, page_size=100, left=0)
    assert not read_on([], oldest=1000.0, rate=1.0, page_size=100, left=50)


def test_budget_counts_down_past_zero() -> None:
    budget = Budget(2)
    for _ in range(3):
        budget.spend()
    assert budget.left() == -1
