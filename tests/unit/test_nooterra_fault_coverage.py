"""Every fault of the Nooterra imitation is either made on the real system or says which upstream behaviour it
changes; `gates faults nooterra-upstream` lists the real system's catalogue."""

from __future__ import annotations

from fixtures.nooterra import live_faults, paid_faults
from fixtures.nooterra.upstream_coverage import MOVED, NEEDS_UPSTREAM_CHANGE
from fixtures.nooterra_upstream import faults as upstream_faults
from gates.testing import run_cli


def test_the_imitation_keeps_only_faults_that_need_upstream_changed() -> None:
    """Every fault left on the imitation says which upstream behaviour it changes; none of the moved ones is left."""
    ids = {f.id for f in (*live_faults.FAULTS, *paid_faults.FAULTS)}
    assert set(NEEDS_UPSTREAM_CHANGE) == ids
    assert set(MOVED).isdisjoint(ids)
    assert all(note.strip() for note in NEEDS_UPSTREAM_CHANGE.values())


def test_moved_faults_exist_on_the_real_system() -> None:
    """Each moved fault names a fault of the upstream catalogue, and no two imitation faults share one."""
    upstream = {f.id for f in upstream_faults.FAULTS}
    assert set(MOVED.values()) <= upstream
    assert len(set(MOVED.values())) == len(MOVED)


def test_faults_listing_names_the_upstream_catalogue() -> None:
    """`gates faults nooterra-upstream` prints each fault with its sorted trips."""
    code, out, _ = run_cli("faults", "nooterra-upstream")
    assert code == 0
    listed = dict(line.split("\t") for line in out.splitlines() if ":" not in line.split("\t")[0])
    assert listed == {f.id: ",".join(sorted(f.trips)) for f in upstream_faults.FAULTS}
