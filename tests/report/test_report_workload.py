"""Which containers ``--workload`` names, and the one line when it names none."""

from __future__ import annotations

import pytest

from runwatch.events import Container
from runwatch.report.workload import WorkloadNotFound, select

APP = Container(id="a1b2c3d4e5f6" * 5, runtime="containerd", name="app", pod="shop-5f7c9", namespace="prod",
                spiffe_id="spiffe://cluster.local/ns/prod/sa/shop")
SIDECAR = Container(id="0f9e8d7c6b5a" * 5, runtime="containerd", name="envoy", pod="shop-5f7c9", namespace="prod")
ELSEWHERE = Container(id="77aa66bb55cc" * 5, runtime="containerd", name="app", pod="shop-5f7c9", namespace="staging")
ALL = [APP, SIDECAR, ELSEWHERE]


def test_a_pod_name_selects_every_container_of_every_pod_of_that_name() -> None:
    assert [c.id for c in select(ALL, "shop-5f7c9")] == [APP.id, SIDECAR.id, ELSEWHERE.id]


def test_namespace_pod_spiffe_name_and_id_prefix() -> None:
    assert [c.name for c in select(ALL, "prod/shop-5f7c9")] == ["app", "envoy"]
    assert [c.id for c in select(ALL, "spiffe://cluster.local/ns/prod/sa/shop")] == [APP.id]
    assert [c.id for c in select(ALL, "app")] == [APP.id, ELSEWHERE.id]
    assert [c.id for c in select(ALL, "0f9e")] == [SIDECAR.id]


def test_a_prefix_shorter_than_four_characters_selects_nothing() -> None:
    with pytest.raises(WorkloadNotFound) as err:
        select(ALL, "0f9")
    assert str(err.value).startswith("no workload '0f9' in the store (")


def test_near_matches_and_control_characters_in_one_line() -> None:
    with pytest.raises(WorkloadNotFound) as err:
        select(ALL, "shop-5f7c")
    assert str(err.value) == ("no workload 'shop-5f7c' in the store (near matches: shop-5f7c9, prod/shop-5f7c9, "
                              "staging/shop-5f7c9)")
    hostile = Container(id="deadbeef" * 8, runtime="runc", name="evil\nforged line")
    with pytest.raises(WorkloadNotFound) as err:
        select([hostile], "evil")
    assert "\n" not in str(err.value) and "evil\\nforged line" in str(err.value)


def test_an_empty_store_says_so() -> None:
    with pytest.raises(WorkloadNotFound, match=r"^no workload 'x' in r\.db \(r\.db holds no container events\)$"):
        select([], "x", where="r.db")
