"""Application layer: the service process, the CLI and its commands, the read API and the runtime glue."""
