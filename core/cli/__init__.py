"""One module per CLI verb: VERB, HELP, add_arguments(parser) and main(args) -> exit code."""
