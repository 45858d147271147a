"""Reports for people: the demo's one-page report and the DSMB study report (open and closed,
HTML and PDF), their sections, tables and figures, from a frozen data snapshot."""
