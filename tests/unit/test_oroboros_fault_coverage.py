"""Every fault of the Oroboros imitation is made on the real system, or says which upstream behaviour it changes
(or, not made there yet, what making it needs); the imitation keeps no fault the real system shows."""

from __future__ import annotations

from fixtures.host import faults as imitation_host
from fixtures.host import upstream_faults
from fixtures.oroboros import faults as imitation
from fixtures.oroboros.upstream_coverage import MOVED, NEEDS_UPSTREAM_CHANGE, NOT_YET_MADE
from fixtures.oroboros_upstream import faults as upstream_loopback
from gates.testing import run_cli

IMITATION = {
    *(f"oroboros:{f.id}" for f in imitation.FAULTS),
    *(f"oroboros-host:{f.id}" for f in imitation_host.HOST_FAULTS),
}
UPSTREAM = {
    *(f"oroboros-upstream:{f.id}" for f in upstream_loopback.FAULTS),
    *(f"oroboros-upstream-host:{f.id}" for f in upstream_faults.UPSTREAM_HOST_FAULTS),
}


def test_the_three_maps_are_disjoint_and_say_something() -> None:
    assert set(MOVED).isdisjoint(NEEDS_UPSTREAM_CHANGE)
    assert set(MOVED).isdisjoint(NOT_YET_MADE)
    assert set(NEEDS_UPSTREAM_CHANGE).isdisjoint(NOT_YET_MADE)
    assert all(note.strip() for note in (*NEEDS_UPSTREAM_CHANGE.values(), *NOT_YET_MADE.values()))


def test_the_imitation_keeps_only_faults_the_real_system_does_not_show() -> None:
    """Every imitation fault is explained, and none that moved is still in an imitation catalogue."""
    assert set(NEEDS_UPSTREAM_CHANGE) | set(NOT_YET_MADE) == IMITATION
    assert not set(MOVED) & IMITATION


def test_moved_faults_exist_on_the_real_system() -> None:
    """Each moved fault names a fault of an upstream catalogue."""
    assert set(MOVED.values()) <= UPSTREAM


def test_upstream_host_faults_are_well_formed() -> None:
    """Unique ids, every fault declares what it trips, and each one can be undone."""
    ids = [f.id for f in upstream_faults.UPSTREAM_HOST_FAULTS]
    assert len(ids) == len(set(ids))
    for fault in upstream_faults.UPSTREAM_HOST_FAULTS:
        assert fault.trips, fault.id
        assert fault.script.strip()
        assert fault.revert.strip()
        assert all("[" in t and t.endswith("]") for t in fault.trips), fault.id


def test_faults_listing_names_the_upstream_host_catalogue() -> None:
    """`gates faults oroboros-upstream-host` prints each of its faults with its sorted trips."""
    code, out, _ = run_cli("faults", "oroboros-upstream-host")
    assert code == 0
    listed = dict(line.split("\t") for line in out.splitlines() if ":" not in line.split("\t")[0])
    assert listed == {f.id: ",".join(sorted(f.trips)) for f in upstream_faults.UPSTREAM_HOST_FAULTS}
