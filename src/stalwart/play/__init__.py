"""The trial played end to end: simulated sites writing through the capture service (in process
or over the HTTP API of a local server), and ``stalwart demo`` from an empty database to the
report."""
