"""Route names for apps without a router: variable path segments become placeholders."""

from __future__ import annotations

import pytest

from leakware.routes import normalise_path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/", "/", id="root"),
        pytest.param("/health", "/health", id="fixed word"),
        pytest.param("/users/42", "/users/{id}", id="number"),
        pytest.param("/users/42/", "/users/{id}/", id="trailing slash"),
        pytest.param("/prices/-3.5", "/prices/{id}", id="signed decimal"),
        pytest.param(
            "/orders/123e4567-e89b-12d3-a456-426614174000", "/orders/{uuid}", id="uuid"
        ),
        pytest.param("/orders/123E4567E89B12D3A456426614174000", "/orders/{uuid}", id="bare uuid"),
        pytest.param("/blobs/9f1c2d3e4f5a6b7c8d9e", "/blobs/{hex}", id="long hex"),
        pytest.param("/api/v2/items", "/api/v2/items", id="version word"),
        pytest.param("/files/report.csv", "/files/report.csv", id="dotted word"),
        pytest.param("/users/Alice", "/users/{value}", id="mixed case"),
        pytest.param("/users/a%40b.example", "/users/{value}", id="encoded"),
        pytest.param("/users/bob@example.com", "/users/{value}", id="email"),
        pytest.param("/orders/order123456", "/orders/{value}", id="embedded id"),
        pytest.param("/q/" + "z" * 40, "/q/{value}", id="long segment"),
        pytest.param("/a/b/c/d/e/f/g/h/i/j/k/l/m/n", "/a/b/c/d/e/f/g/h/i/j/k/l/{more}", id="deep"),
    ],
)
def test_normalise_path_cases(path: str, expected: str) -> None:
    """Segments that may carry data are replaced; fixed words are kept."""
    assert normalise_path(path) == expected
