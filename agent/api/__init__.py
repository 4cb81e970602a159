"""The local HTTP API, its guards, OpenAPI, metrics; imports locker, thermal, hardware, storage."""
