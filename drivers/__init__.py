"""Hardware only: bytes and pins, nothing about the cloud (imports nothing of ``agent``)."""
