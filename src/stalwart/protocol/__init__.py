"""Protocol as data: schema, loader and per-participant calendars."""
