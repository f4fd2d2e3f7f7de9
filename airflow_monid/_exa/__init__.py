"""Exa's rules: run outcome, the trigger ledger's phases, the watcher's watermark."""
