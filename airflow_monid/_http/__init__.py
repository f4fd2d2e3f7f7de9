"""Below the hooks: how one request is made (policy, transport, connection, the base hook, back-off)."""
