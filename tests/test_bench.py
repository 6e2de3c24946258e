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


def test_the_fleet_bench_still_runs_on_a_small_fleet(tmp_path):
    """A registry or port change that breaks the bench shows here, not on the next hand run."""
    import json

    from bench import fleet

    output = tmp_path / "fleet.json"
    assert (
        fleet.main(
            ["--modes", "local", "--items", "5", "--credentials", "20", "--latency-ms", "1", "--json", str(output)]
        )
        == 0
    )
    rows = json.loads(output.read_text())
    rows = rows["results"] if isinstance(rows, dict) else rows
    assert {row["work"] for row in rows} == {"import 5", "import 5 + validate", "rewrap 20"}
