"""pyinfra helpers the tasks use: facts and operations pyinfra lacks (`ops`) and
rendering of templates and specs (`render`)."""
