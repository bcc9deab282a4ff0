"""The sampling decision: warm-up, base rate, and the error boost after a failure."""

from __future__ import annotations

from leakware.sampling import MAX_BOOSTED_ROUTES, Sampler


def test_sampler_warmup_skips_first_requests() -> None:
    """The first `warmup` requests are never sampled, even at rate 1."""
    sampler = Sampler(rate=1.0, warmup=5, boost_rate=1.0, boost_requests=0)

    decisions = [sampler.should_sample("GET", "/") for _ in range(8)]

    assert decisions == [False] * 5 + [True] * 3


def test_sampler_rate_zero_never_samples() -> None:
    """Rate 0 samples nothing."""
    sampler = Sampler(rate=0.0, warmup=0, boost_rate=0.0, boost_requests=0)

    assert not any(sampler.should_sample("GET", "/") for _ in range(1000))


def test_sampler_rate_is_a_fraction() -> None:
    """Rate 0.2 samples about a fifth of the requests."""
    sampler = Sampler(rate=0.2, warmup=0, boost_rate=0.2, boost_requests=0)

    sampled = sum(sampler.should_sample("GET", "/") for _ in range(20_000))

    assert 3_400 < sampled < 4_600


def test_sampler_boost_after_failure() -> None:
    """After a failure, the route's next requests use the boost rate, then the base rate."""
    sampler = Sampler(rate=0.0, warmup=0, boost_rate=1.0, boost_requests=3)

    sampler.note_failure("GET", "/orders/17")
    decisions = [sampler.should_sample("GET", "/orders/18") for _ in range(5)]

    assert decisions == [True, True, True, False, False]


def test_sampler_boost_only_same_route() -> None:
    """A boost applies to the failed route only: same method and normalised path."""
    sampler = Sampler(rate=0.0, warmup=0, boost_rate=1.0, boost_requests=10)

    sampler.note_failure("GET", "/orders/17")

    assert not sampler.should_sample("POST", "/orders/17")
    assert not sampler.should_sample("GET", "/users/17")
    assert sampler.should_sample("GET", "/orders/99")


def test_sampler_boost_disabled_with_zero() -> None:
    """boost_requests=0 turns the error boost off."""
    sampler = Sampler(rate=0.0, warmup=0, boost_rate=1.0, boost_requests=0)

    sampler.note_failure("GET", "/orders/17")

    assert not sampler.should_sample("GET", "/orders/17")


def test_sampler_boosts_bounded() -> None:
    """Failures on many routes keep only the newest boosts."""
    sampler = Sampler(rate=0.0, warmup=0, boost_rate=1.0, boost_requests=5)

    paths = [f"/route-{chr(97 + n % 26)}{n // 26}/x" for n in range(MAX_BOOSTED_ROUTES + 10)]
    for path in paths:
        sampler.note_failure("GET", path)

    assert len(sampler._boosts) == MAX_BOOSTED_ROUTES
    assert not sampler.boosted("GET", paths[0])
    assert sampler.boosted("GET", paths[-1])


def test_sampler_reset_restarts_warmup() -> None:
    """reset() (after fork) starts the warm-up again and forgets boosts."""
    sampler = Sampler(rate=1.0, warmup=2, boost_rate=1.0, boost_requests=5)
    for _ in range(3):
        sampler.should_sample("GET", "/")
    sampler.note_failure("GET", "/x")

    sampler.reset()

    assert not sampler.should_sample("GET", "/")
    assert not sampler.boosted("GET", "/x")
