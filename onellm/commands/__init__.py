"""One module per ``onellm`` subcommand: ``add_arguments(parser)`` and ``run(args) -> int``."""
