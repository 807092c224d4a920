"""One module per `kernelos` subcommand (see tools/cli.py for what each defines)."""
