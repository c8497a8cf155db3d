"""One concern per module; each exposes `apply(settings)`, a pyinfra @deploy."""
