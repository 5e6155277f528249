"""One module per `pacesetter` subcommand group; each exposes ``register(subparsers)``."""
