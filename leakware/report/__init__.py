"""``leakware report``: read event logs back and rank the routes that leak."""
