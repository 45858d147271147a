"""``python -m stalwart.cli`` runs the command line."""

from stalwart.cli.main import main

main()
