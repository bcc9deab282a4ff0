"""Per-key statistics and verdicts: what a run of samples and liveness checks says about a key."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from leakware.stats import MAX_TYPES, KeyStats, Sample, attribute, judge, rank_types

APP = "shop.cart.Basket"


def _sample(
    types: Iterable[tuple[str, int]], *, in_flight: int = 0, route: str = "/baskets/{id}"
) -> Sample:
    entries = tuple((name, objects, objects * 64) for name, objects in types)
    return Sample(
        method="GET",
        route=route,
        exception=None,
        status=200,
        objects=sum(objects for _, objects, _ in entries),
        bytes=sum(size for _, _, size in entries),
        types=entries,
        net_blocks=0,
        threads=0,
        in_flight=in_flight,
    )


def _checked(
    stats: KeyStats,
    alive: dict[str, bool],
    *,
    unwitnessed: tuple[str, ...] = (),
    in_flight: int = 0,
) -> None:
    """Add a sample retaining the types in ``alive`` and ``unwitnessed``, and check one witness
    of each type in ``alive``, as the in-process analysis does once a later sample of the key
    arrived."""
    present = [*alive, *unwitnessed]
    stats.add(_sample(((name, 1) for name in present), in_flight=in_flight))
    stats.checked += 1
    for name, totals in stats.types.items():
        if name in present:
            totals.checked_present += 1
            if name not in alive:
                continue
        totals.observed += 1
        totals.exposure += in_flight
    for name, found in alive.items():
        stats.types[name].record_check(stats.samples, alive=int(found), freed=int(not found))


def _settle(stats: KeyStats, *, alive: bool, in_flight: int) -> None:
    """Check the latest sample's witness of `APP`, found ``alive`` or absent."""
    totals = stats.types.get(APP)
    if totals is None:
        return
    totals.observed += 1
    totals.exposure += in_flight
    if alive:
        totals.record_check(stats.samples, alive=1, freed=0)


def _key(route: str = "/baskets/{id}") -> KeyStats:
    return KeyStats("GET", route, None)


def _judge(stats: KeyStats) -> str:
    return judge(stats, set(stats.types)).verdict


class TestJudge:
    def test_too_few_samples(self) -> None:
        """Two samples are not enough for any verdict."""
        stats = _key()
        _checked(stats, {APP: True})
        _checked(stats, {APP: True})

        judgement = judge(stats, {APP})

        assert judgement.verdict == "insufficient"
        assert judgement.reason == "too few samples"

    def test_confirmed_retention_leaks(self) -> None:
        """A class retained on every sample and found alive later is a leak."""
        stats = _key()
        for _ in range(6):
            _checked(stats, {APP: True})

        judgement = judge(stats, {APP})

        assert judgement.verdict == "leak"
        assert judgement.types == (APP,)
        assert judgement.confidence > 0.8

    def test_unchecked_retention_insufficient(self) -> None:
        """Retention on every sample without a liveness check yet waits for one."""
        stats = _key()
        for _ in range(6):
            stats.add(_sample([(APP, 1)]))

        assert _judge(stats) == "insufficient"

    def test_freed_at_first_check_clean(self) -> None:
        """Objects that were already freed when first checked were transient."""
        stats = _key()
        for _ in range(6):
            _checked(stats, {APP: False})

        judgement = judge(stats, {APP})

        assert judgement.verdict == "clean"
        assert judgement.freed == (APP,)

    def test_evicted_objects_clean(self) -> None:
        """Objects alive at one check and freed at a later one came from a bounded structure."""
        stats = _key()
        for _ in range(8):
            _checked(stats, {APP: True})
        totals = stats.types[APP]
        totals.kept, totals.evicted, totals.evicted_age, totals.at_risk = 5, 3, 4, 2

        judgement = judge(stats, {APP})

        assert judgement.verdict == "clean"
        assert "evicts" in judgement.reason

    def test_stray_eviction_still_leaks(self) -> None:
        """Two kept objects freed early do not outweigh three older ones still alive."""
        stats = _key()
        for _ in range(8):
            _checked(stats, {APP: True})
        totals = stats.types[APP]
        totals.kept, totals.evicted, totals.evicted_age, totals.at_risk = 5, 2, 1, 3

        assert _judge(stats) == "leak"

    def test_filled_cache_warming(self) -> None:
        """A cache that retained on the first samples and never since is warming up."""
        stats = _key()
        for _ in range(5):
            _checked(stats, {APP: True})
        for _ in range(15):
            _checked(stats, {})

        judgement = judge(stats, {APP})

        assert judgement.verdict == "warming"
        assert judgement.types == (APP,)

    def test_singleton_warming(self) -> None:
        """One object built on first use and kept is not a leak."""
        stats = _key()
        _checked(stats, {APP: True})
        for _ in range(5):
            _checked(stats, {})

        assert _judge(stats) == "warming"

    @pytest.mark.parametrize("pattern", ["10110", "01101", "11010"], ids=str)
    def test_new_inputs_only_leak(self, pattern: str) -> None:
        """A structure that grows only for new inputs, on about half the samples throughout,
        is a leak."""
        stats = _key()
        for step in pattern * 4:
            _checked(stats, {APP: True} if step == "1" else {})

        assert _judge(stats) == "leak"

    def test_sporadic_builtin_not_leak(self) -> None:
        """Dicts alive on a few samples are as likely another request's: builtin types leak
        only when retained on most samples."""
        stats = _key()
        for step in "1000010000":
            _checked(stats, {"dict": True} if step == "1" else {})

        assert _judge(stats) != "leak"

    def test_unwitnessed_type_follows_containers(self) -> None:
        """A type retained on checked samples that never had a witness, such as dicts of
        strings, goes with its containers' verdict."""
        stats = _key()
        for _ in range(6):
            _checked(stats, {APP: True}, unwitnessed=("dict",))

        judgement = judge(stats, {APP, "dict"})

        assert judgement.verdict == "leak"
        assert judgement.types == (APP, "dict")

    def test_untracked_type_follows_containers(self) -> None:
        """A type the collector never tracks is not judged on its own."""
        stats = _key()
        for _ in range(6):
            stats.add(_sample([("select.epoll", 1)]))

        judgement = judge(stats, {"select.epoll"}, untracked=lambda name: name == "select.epoll")

        assert judgement.verdict == "clean"

    def test_app_class_named_first(self) -> None:
        """Of the leaking types, the app's own class comes first, then library classes."""
        stats = _key()
        for _ in range(6):
            _checked(stats, {"list": True, "flask.ctx.RequestContext": True, APP: True})

        judgement = judge(stats, set(stats.types), in_app=lambda module: module == "shop.cart")

        assert judgement.types == (APP, "flask.ctx.RequestContext", "list")


class TestAttribute:
    def test_concurrent_noise_not_owned(self) -> None:
        """A class another key leaks, confirmed now and then in a busy key's windows, belongs
        to the key that leaks it on every sample."""
        leaky = _key("/baskets/{id}")
        busy = _key("/health")
        others = [_key(route) for route in ("/a", "/b", "/c")]
        for _ in range(12):
            _checked(leaky, {APP: True}, in_flight=7)
        for step in "100001000010":
            _checked(busy, {APP: True} if step == "1" else {}, in_flight=7)
        for other in others:
            for step in "010000100000":
                _checked(other, {APP: True} if step == "1" else {}, in_flight=7)

        owned = attribute([leaky, busy, *others])

        assert APP in owned[leaky.key]
        assert APP not in owned[busy.key]

    def test_solo_samples_decide(self) -> None:
        """With enough solo samples, a type belongs to the keys whose solo samples show it."""
        owner = _key("/baskets/{id}")
        bystander = _key("/health")
        for _ in range(4):
            owner.add(_sample([(APP, 1)]))
            bystander.add(_sample([]))
        bystander.add(_sample([(APP, 1)], in_flight=3))

        owned = attribute([owner, bystander])

        assert owned[owner.key] == {APP}
        assert owned[bystander.key] == set()

    def test_small_share_not_owned(self) -> None:
        """Without solo samples, a key retaining under half as much as the largest does not
        own the type."""
        owner = _key("/baskets/{id}")
        bystander = _key("/health")
        for _ in range(4):
            owner.add(_sample([(APP, 10)], in_flight=2))
            bystander.add(_sample([(APP, 1)], in_flight=2))

        owned = attribute([owner, bystander])

        assert APP in owned[owner.key]
        assert APP not in owned[bystander.key]

    def test_solo_majority_beats_confirmations(self) -> None:
        """A type retained on most solo samples is the key's own, even when the key's
        confirmations are no more than what shared windows elsewhere explain."""
        owner = _key("/baskets/{id}")
        neighbours = [_key(route) for route in ("/a", "/b")]
        for _ in range(3):
            _checked(owner, {APP: True})
        for _ in range(3):
            _checked(owner, {APP: False}, in_flight=5)
        for neighbour in neighbours:
            for _ in range(6):
                _checked(neighbour, {APP: True}, in_flight=1)

        owned = attribute([owner, *neighbours])

        assert APP in owned[owner.key]

    def test_few_always_confirmed_owned(self) -> None:
        """With too few samples for the significance test, a key whose every checked sample
        kept the type alive, and that retains the most of it per request, owns it."""
        owner = _key("/baskets/{id}")
        neighbour = _key("/health")
        for _ in range(3):
            owner.add(_sample([(APP, 300)], in_flight=6))
            _settle(owner, alive=True, in_flight=6)
        for step in "110110":
            neighbour.add(_sample([(APP, 100)] if step == "1" else [], in_flight=6))
            _settle(neighbour, alive=step == "1", in_flight=6)

        owned = attribute([owner, neighbour])

        assert APP in owned[owner.key]
        assert APP not in owned[neighbour.key]

    def test_sporadic_type_missing_from_few_solo(self) -> None:
        """A type retained on half the samples and missing from three solo samples by chance
        still belongs to the key that retains most of it."""
        owner = _key("/users/{id}")
        bystander = _key("/health")
        for _ in range(3):
            owner.add(_sample([]))
        for index in range(6):
            owner.add(_sample([(APP, 1)], in_flight=4))
            bystander.add(_sample([(APP, 1)] if index % 3 == 0 else [], in_flight=4))

        owned = attribute([owner, bystander])

        assert APP in owned[owner.key]

    def test_absence_from_many_solo_decides(self) -> None:
        """A type that a key's many solo samples never show is not the key's, however much of
        it the key's shared windows hold."""
        bystander = _key("/health")
        for _ in range(12):
            bystander.add(_sample([]))
        for _ in range(12):
            bystander.add(_sample([(APP, 5)], in_flight=4))

        owned = attribute([bystander])

        assert APP not in owned[bystander.key]


class TestKeyStats:
    def test_type_capacity_keeps_app_classes(self) -> None:
        """When a key tracks `MAX_TYPES` types, a new app class replaces a builtin one."""
        stats = _key()
        crowd = [(f"builtin{index}", 5) for index in range(MAX_TYPES)]
        stats.add(_sample(crowd))
        stats.add(_sample(crowd))

        stats.add(_sample([*crowd, (APP, 1)]), lambda module: module == "shop.cart")

        assert APP in stats.types
        assert len(stats.types) == MAX_TYPES

    def test_per_request_prefers_solo_samples(self) -> None:
        """With enough solo samples, per-request numbers come from them alone."""
        stats = _key()
        for _ in range(3):
            stats.add(_sample([(APP, 1)]))
        stats.add(_sample([(APP, 40)], in_flight=6))

        objects, _ = stats.per_request(APP)

        assert objects == pytest.approx(1.0)

    def test_rank_types_groups(self) -> None:
        """Types rank by group: app classes, libraries, standard library, builtins, atoms."""
        stats = _key()

        ranked = rank_types(["str", "dict", "logging.Logger", "flask.Request", APP], stats,
                            lambda module: module == "shop.cart")

        assert ranked == [APP, "flask.Request", "logging.Logger", "dict", "str"]
