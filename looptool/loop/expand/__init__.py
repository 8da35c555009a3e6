"""Error-driven data expansion (EDDE, paper step d): seeds, children, parsing, verification."""
