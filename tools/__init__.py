"""Command-line tools: the `kernelos` command and its subcommands (tools/commands/)."""
