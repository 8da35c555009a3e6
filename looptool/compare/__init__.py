"""`looptool compare`: the loop, the static baseline and (optionally) the Table 4 ablations
as DVC experiments from the same seed data and warm start, and one table / CSV / plot of
their per-iteration evaluation."""
