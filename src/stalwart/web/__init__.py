"""The sites' web service: a JSON API and server-rendered pages over ``capture.service``."""
