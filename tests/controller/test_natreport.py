"""results.md's NAT section: cells against theory, worse (red) and better (flagged)."""

from __future__ import annotations

from cluster.models import PeerRecord, Results, ResultsMetadata, Status, TestRecord, Theory
from controller.results.natreport import (
    AS_THEORY_NO,
    BETTER,
    WORSE,
    nat_cell,
    nat_grids,
    nat_kind,
    theory_counts,
)
from controller.results.report import render_results_md


def record(status, dialer_nat, listener_nat, theory, rtt=None, impl="go-v0.51") -> TestRecord:
    return TestRecord(name=f"{impl} x {impl} (tcp) [{dialer_nat} x {listener_nat}]", status=status,
                      dialer=PeerRecord(version=impl), listener=PeerRecord(version=impl),
                      transport="tcp", dialer_nat=dialer_nat, listener_nat=listener_nat,
                      theory=theory, rtt_ms=rtt)


def test_cells_set_against_theory() -> None:
    assert nat_cell(record(Status.PASS, "full-cone", "symmetric", Theory.ONE_WAY, 201.0)) == "🟢 201ms"
    assert nat_cell(record(Status.FAIL, "full-cone", "cgnat", Theory.POSSIBLE)) == WORSE
    assert nat_cell(record(Status.FAIL, "full-cone", "symmetric", Theory.ONE_WAY)) == (
        f"{WORSE} (one-way)")
    assert nat_cell(record(Status.FAIL, "symmetric", "symmetric", Theory.IMPOSSIBLE)) == AS_THEORY_NO
    assert nat_cell(record(Status.PASS, "symmetric", "symmetric", Theory.IMPOSSIBLE, 205.0)) == (
        f"{BETTER} 205ms")
    assert nat_cell(record(Status.ERROR, "symmetric", "symmetric", Theory.IMPOSSIBLE)) == "⚫"


def test_results_md_counts_and_flags_and_keeps_default_tables() -> None:
    records = [record(Status.PASS, "port-restricted-cone", "port-restricted-cone", Theory.POSSIBLE, 201.0),
               record(Status.FAIL, "full-cone", "restricted-cone", Theory.POSSIBLE),
               record(Status.PASS, "symmetric", "cgnat", Theory.IMPOSSIBLE, 202.0),
               record(Status.FAIL, "symmetric", "symmetric", Theory.IMPOSSIBLE)]
    assert theory_counts(records).worse == 1 and theory_counts(records).better == 1
    text = render_results_md(Results(metadata=ResultsMetadata(test_pass="t"), tests=records))
    assert "**Worse than theory**: 1" in text and "**Better than theory**: 1" in text
    assert "### go-v0.51 x go-v0.51 (tcp)" in text
    assert "| **symmetric** |" in text and BETTER + " 202ms" in text
    seed_table = text.split("## NAT pairs")[0]
    assert "🟢 201ms" in seed_table and BETTER not in seed_table  # only the default pair there
    assert "1/1 (possible)" in text and "0/1 (impossible)" in text


def test_a_default_pass_has_no_nat_section() -> None:
    records = [record(Status.PASS, "port-restricted-cone", "port-restricted-cone", Theory.POSSIBLE, 201.0)]
    text = render_results_md(Results(metadata=ResultsMetadata(test_pass="t"), tests=records))
    assert "NAT" not in text


def test_a_default_pair_record_without_theory_gets_it_from_its_pair() -> None:
    """results.yaml drops theory from default-pair records (the seed's shape)."""
    plain = record(Status.FAIL, "port-restricted-cone", "port-restricted-cone", None)
    assert nat_cell(plain) == WORSE
    sym = record(Status.PASS, "symmetric", "symmetric", Theory.IMPOSSIBLE, 201.0)
    text = render_results_md(Results(metadata=ResultsMetadata(test_pass="t"), tests=[plain, sym]))
    assert "0/1 (possible)" in text and "(?)" not in text


def test_grids_per_transport_and_implementation_pair_in_presets_order() -> None:
    records = [record(Status.PASS, "symmetric", "cgnat", Theory.IMPOSSIBLE, 202.0),
               record(Status.FAIL, "full-cone", "symmetric", Theory.ONE_WAY),
               record(Status.PASS, "full-cone", "cgnat", Theory.POSSIBLE, 201.0, impl="rust-v0.57")]
    grids = nat_grids(records, lambda r: r.transport)
    assert [(g.variant, g.dialer, g.listener) for g in grids] == [
        ("tcp", "go-v0.51", "go-v0.51"), ("tcp", "rust-v0.57", "rust-v0.57")]
    go = grids[0]
    assert go.dialer_nats == ["full-cone", "symmetric"]
    assert go.listener_nats == ["symmetric", "cgnat"]
    assert go.cells == {("symmetric", "cgnat"): 0, ("full-cone", "symmetric"): 1}
    assert go.record(records, "full-cone", "cgnat") is None
    assert [nat_kind(go.record(records, *pair)) for pair in go.cells] == ["better", "worse"]
    assert nat_kind(None) == "not-run"
