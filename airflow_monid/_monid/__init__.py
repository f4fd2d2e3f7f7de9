"""Monid's rules: outcome table, exactly-once, the checks before paying, the shared status poller."""
