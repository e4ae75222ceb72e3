"""cluster.nat: preset definitions, the probe's classification (with fake observations), theory."""

from __future__ import annotations

import pytest

from cluster.errors import ConfigError
from cluster.nat import (
    ADF,
    ADM,
    APDF,
    APDM,
    DEFAULT_BEHAVIOUR,
    DEFAULT_PRESET,
    EIF,
    EIM,
    PRESETS,
    Behaviour,
    ProbeFailed,
    ProbeObservation,
    TransportObservation,
    behaviour_report,
    classify,
    classify_filtering,
    classify_mapping,
    preset,
    punch_verdict,
    theory_table,
)

PUB = "11.250.0.10"


def fake_transport(*, primary: int, alt_address: int, alt_both: int, local: int = 40000,
                   received=("primary",), filter_local: int = 40001,
                   filter_port: int | None = None) -> TransportObservation:
    """What the probe client would print for a NAT that mapped the ports given."""
    return TransportObservation.model_validate({
        "mapping": {"localPort": local, "observed": {
            "primary": f"{PUB}:{primary}", "altAddress": f"{PUB}:{alt_address}",
            "altBoth": f"{PUB}:{alt_both}"}},
        "filtering": {"localPort": filter_local, "observed": f"{PUB}:{filter_port or filter_local}",
                      "received": list(received)},
    })


def test_presets_are_the_issue_s_definitions():
    assert {name: (p.behaviour.mapping, p.behaviour.filtering) for name, p in PRESETS.items()} == {
        "full-cone": (EIM, EIF), "restricted-cone": (EIM, ADF), "port-restricted-cone": (EIM, APDF),
        "symmetric": (APDM, APDF), "cgnat": (EIM, APDF)}
    assert DEFAULT_PRESET == "port-restricted-cone"
    assert PRESETS[DEFAULT_PRESET].behaviour == DEFAULT_BEHAVIOUR


def test_every_preset_keeps_the_50ms_per_peer_so_the_direct_rtt_stays_200ms():
    for p in PRESETS.values():
        assert sum(r.delay_ms for r in p.routers) == 50, p.name
    assert [r.behaviour for r in PRESETS["cgnat"].routers] == [DEFAULT_BEHAVIOUR, Behaviour(EIM, APDF, False)]


def test_the_default_behaviour_adds_no_router_environment():
    assert DEFAULT_BEHAVIOUR.router_env() == {}
    assert Behaviour(EIM, EIF, True).router_env() == {
        "NAT_MAPPING": "eim", "NAT_FILTERING": "eif", "NAT_PORTS": "preserve"}
    assert Behaviour(APDM, APDF, False).router_env() == {
        "NAT_MAPPING": "apdm", "NAT_FILTERING": "apdf", "NAT_PORTS": "random"}
    assert Behaviour(EIM, ADF, True).router_env()["NAT_FILTERING"] == "adf"
    with pytest.raises(ValueError):
        Behaviour(ADM, APDF, False).router_env()


def test_unknown_preset_is_bad_input_naming_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        preset("cone")
    assert err.value.exit_code == 2
    for name in PRESETS:
        assert name in str(err.value)


def test_mapping_classification():
    assert classify_mapping(fake_transport(primary=40000, alt_address=40000, alt_both=40000).mapping) == EIM
    assert classify_mapping(fake_transport(primary=40000, alt_address=51000, alt_both=51000).mapping) == ADM
    assert classify_mapping(fake_transport(primary=40000, alt_address=51000, alt_both=52000).mapping) == APDM


def test_a_different_external_address_is_a_different_mapping():
    obs = fake_transport(primary=40000, alt_address=40000, alt_both=40000)
    moved = obs.mapping.model_copy(
        update={"observed": {**obs.mapping.observed, "altAddress": "11.250.0.11:40000"}})
    assert classify_mapping(moved) != EIM


def test_filtering_classification():
    def filtering(*received):
        observation = fake_transport(primary=1, alt_address=1, alt_both=1, received=received)
        return classify_filtering(observation.filtering)
    assert filtering("primary", "altPort", "altAddress", "altBoth") == EIF
    assert filtering("primary", "altBoth") == EIF
    assert filtering("primary", "altPort") == ADF
    assert filtering("primary") == APDF


def test_no_answer_at_all_is_a_failed_probe_not_a_behaviour():
    with pytest.raises(ProbeFailed):
        classify_filtering(fake_transport(primary=1, alt_address=1, alt_both=1, received=()).filtering)
    obs = fake_transport(primary=1, alt_address=1, alt_both=1)
    missing = obs.mapping.model_copy(update={"observed": {**obs.mapping.observed, "altBoth": None}})
    with pytest.raises(ProbeFailed):
        classify_mapping(missing)


def test_port_preservation_needs_every_mapping_to_keep_its_port():
    kept = fake_transport(primary=40000, alt_address=40000, alt_both=40000)
    assert classify(kept) == Behaviour(EIM, APDF, True)
    stable_but_moved = fake_transport(primary=50000, alt_address=50000, alt_both=50000)
    assert classify(stable_but_moved) == Behaviour(EIM, APDF, False)
    first_kept_then_new = fake_transport(primary=40000, alt_address=51000, alt_both=52000)
    assert classify(first_kept_then_new).port_preserved is False
    filter_moved = fake_transport(primary=40000, alt_address=40000, alt_both=40000, filter_port=60000)
    assert classify(filter_moved).port_preserved is False


def test_report_shape():
    assert behaviour_report(Behaviour(APDM, APDF, False)) == {
        "mapping": "address-and-port-dependent", "filtering": "address-and-port-dependent",
        "portPreserved": False}


def test_observation_rejects_unknown_keys():
    with pytest.raises(ValueError):
        ProbeObservation.model_validate({"udp": {}, "tcp": {}, "extra": 1})


# --- theory ---

def verdict(dialer, listener, t="tcp"):
    return punch_verdict(PRESETS[dialer].behaviour, PRESETS[listener].behaviour, t)


def test_symmetric_pairs():
    assert not verdict("symmetric", "symmetric").possible
    assert not verdict("symmetric", "symmetric", "quic").possible
    assert verdict("symmetric", "full-cone").possible
    assert verdict("symmetric", "full-cone").directions == ("dialer->listener",)
    assert verdict("full-cone", "symmetric").directions == ("listener->dialer",)
    # the listener opened its port to the dialer's address
    assert verdict("symmetric", "restricted-cone").possible
    assert not verdict("symmetric", "port-restricted-cone").possible
    assert not verdict("port-restricted-cone", "symmetric").possible
    assert not verdict("symmetric", "cgnat").possible


def test_cone_pairs_punch_both_ways():
    for d in ("full-cone", "restricted-cone", "port-restricted-cone", "cgnat"):
        for lis in ("full-cone", "restricted-cone", "port-restricted-cone", "cgnat"):
            assert verdict(d, lis).directions == ("dialer->listener", "listener->dialer"), (d, lis)


def test_cgnat_is_a_port_restricted_cone_for_theory():
    for other in PRESETS:
        for t in ("tcp", "quic"):
            assert verdict("cgnat", other, t).possible == verdict("port-restricted-cone", other, t).possible
            assert verdict(other, "cgnat", t).possible == verdict(other, "port-restricted-cone", t).possible


def test_one_way_quic_cells_say_which_side_must_send_the_initial():
    assert "Initial" in verdict("symmetric", "full-cone", "quic").reason
    assert "Initial" not in verdict("symmetric", "full-cone", "tcp").reason


def test_an_address_dependent_mapping_behaves_like_a_new_port_towards_the_peer():
    adm = Behaviour(ADM, APDF, False)
    assert not punch_verdict(adm, PRESETS["port-restricted-cone"].behaviour, "tcp").possible
    assert punch_verdict(adm, PRESETS["restricted-cone"].behaviour, "tcp").possible


def test_the_table_covers_every_pair_and_transport_with_a_reason():
    table = theory_table()
    assert len(table) == len(PRESETS) ** 2 * 2
    assert all(v.reason for v in table.values())
    assert sum(not v.possible for v in table.values()) == 2 * 5  # sym x sym, sym <-> prc, sym <-> cgnat
    with pytest.raises(ValueError):
        punch_verdict(DEFAULT_BEHAVIOUR, DEFAULT_BEHAVIOUR, "udp")
