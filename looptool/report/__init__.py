"""`looptool report`: one self-contained HTML page of a run, from the `looptool sql` views."""
