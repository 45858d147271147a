"""``python -m stalwart`` runs the command line."""

from stalwart.cli import main

main()
