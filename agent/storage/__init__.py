"""On disk (SQLite): the outbox, cabinet settings, command records; imports nothing."""
