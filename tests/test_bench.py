"""The benches stay in step with the code they measure (they are run by hand, so nothing else would notice)."""

from __future__ import annotations

import main
from bench import operations


def test_the_cold_start_table_covers_every_entry_point():
    assert set(operations.COLD_CASES) == set(main.ENTRY_POINTS)


def test_the_import_table_covers_every_function_module():
    modules = {handler.__module__ for handler in main.ENTRY_POINTS.values()}
    assert modules <= set(operations.FUNCTION_MODULES)


def test_every_cold_case_calls_its_own_entry_points_route():
    from werkzeug.routing import Map, Rule

    for name, case in operations.COLD_CASES.items():
        method, rule = main.ENTRY_POINTS[name].route
        routes = Map([Rule(rule, endpoint=name, methods=[method])]).bind("")
        assert routes.match(case.cold[1], method=case.cold[0])[0] == name
