"""The benches stay in step with the code they measure (they are run by hand, so nothing else would notice)."""

from __future__ import annotations

import main
from bench import cold_start, operations


def test_the_cold_start_table_covers_every_entry_point():
    assert set(cold_start.COLD_CASES) == set(main.ENTRY_POINTS)


def test_the_import_table_covers_every_function_module():
    modules = {handler.__module__ for handler in main.ENTRY_POINTS.values()}
    assert modules <= set(cold_start.FUNCTION_MODULES)


def test_every_cold_case_calls_its_own_entry_points_route():
    from werkzeug.routing import Map, Rule

    for name, case in cold_start.COLD_CASES.items():
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


def test_the_revalidation_bench_says_what_each_row_checked(tmp_path, capsys):
    import json

    from bench import revalidation

    output = tmp_path / "revalidation.json"
    arguments = ["--counts", "6,12", "--runs", "1", "--latency-ms", "1", "--page-size", "5", "--json", str(output)]
    revalidation.main(arguments)
    report = json.loads(output.read_text())
    assert [(row["count"], row["checked"], row["checked_all"], row["pages"]) for row in report["rows"]] == [
        (6, 6, True, 2),
        (12, 12, True, 3),
    ]
    assert report["large"]["checked"] == 12 and report["large"]["peak_rss_mb"] is not None
    assert "WARNING" not in capsys.readouterr().out
    # A time box spent before it starts: the row says it checked none of them.
    revalidation.main(["--counts", "6", "--runs", "1", "--latency-ms", "1", "--max-seconds", "0"])
    printed = capsys.readouterr().out
    assert "WARNING: the N=6 row checked 0 of 6 integrations" in printed


def test_the_operations_bench_measures_every_operation_cold_and_warm(simulator, tmp_path):
    settings = operations.mode_settings("local", simulator, None, tmp_path / "ops")  # local mode needs no GCP stack
    rows = operations.measure_operations("local", settings, reps=1)
    assert [row["operation"] for row in rows] == list(operations.OPERATIONS)
    for row in rows:
        assert row["jobs_cold"] == row["jobs"] == operations.BUDGET[row["operation"]][0], row["operation"]
        assert row["verdict"] == "OK" and row["projected_bigquery_s"] is None  # projected for gcp rows only
    assert operations.projected(3) == round(3 * operations.BIGQUERY_SECONDS_PER_JOB, 3)
