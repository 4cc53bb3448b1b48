import pytest

from loadtests.bench import (
    check_targets,
    markdown_table,
    parse_duration,
    parse_wrk,
    percentile,
    wrk_script,
)

WRK_OUTPUT = """Running 8s test @ http://127.0.0.1:40000/v1/chat/completions
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    61.71ms   30.52ms 412.03ms   78.30%
    Req/Sec   520.11     80.02   700.00     70.00%
  Latency Distribution
     50%   55.10ms
     75%   70.00ms
     90%  101.20ms
     99%    1.21s
  8321 requests in 8.01s, 7.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:   1038.82
Transfer/sec:      0.89MB
"""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("812.00us", 0.000812), ("1.23ms", 0.00123), ("2.01s", 2.01), ("1.00m", 60.0)],
)
def test_wrk_durations_are_read_in_seconds(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_a_non_duration_is_refused():
    with pytest.raises(ValueError):
        parse_duration("fast")


def test_wrk_output_gives_throughput_percentiles_and_every_kind_of_error():
    result = parse_wrk(WRK_OUTPUT)
    assert result["requests"] == 8321
    assert result["rps"] == pytest.approx(1038.82)
    assert result["latency"] == pytest.approx({"p50": 0.0551, "p75": 0.07, "p90": 0.1012, "p99": 1.21})
    assert result["errors"] == {"connect": 0, "read": 2, "write": 0, "timeout": 3, "non_2xx": 4}
    assert result["error_count"] == 9


def test_clean_wrk_output_has_no_errors():
    clean = "\n".join(line for line in WRK_OUTPUT.splitlines() if "Socket errors" not in line and "Non-2xx" not in line)
    assert parse_wrk(clean)["error_count"] == 0


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def test_the_lua_script_makes_every_prompt_unique_per_thread_and_request():
    script = wrk_script(path="/v1/chat/completions", model="bench-gpt", token="sk-test", run_id="abc")
    assert 'thread:set("tid", threads)' in script
    assert "counter = counter + 1" in script
    assert "(abc-%d-%d)" in script
    assert '"Bearer sk-test"' in script


@pytest.mark.parametrize(
    ("database", "redis"),
    [
        ("postgres://root@127.0.0.1:5432/sentinel", "redis://127.0.0.1:6379/13"),
        ("postgres://root@127.0.0.1:5432/test_sentinel", "redis://127.0.0.1:6379/13"),
        ("postgres://root@127.0.0.1:5432/sentinel_bench", "redis://127.0.0.1:6379/15"),
        ("postgres://root@db.example:5432/sentinel_bench", "redis://127.0.0.1:6379/13"),
    ],
)
def test_the_bench_refuses_the_suites_stores_and_anything_off_loopback(database, redis):
    with pytest.raises(SystemExit):
        check_targets(database, redis)


def test_markdown_table_has_a_header_a_rule_and_one_line_per_row():
    table = markdown_table(["a", "b"], [["1", "2"], ["3", "4"]])
    assert table.splitlines() == ["| a | b |", "|---:|---:|", "| 1 | 2 |", "| 3 | 4 |"]
