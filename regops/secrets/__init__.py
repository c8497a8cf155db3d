"""Operator-side secrets: passwords and generated values (`store`), the private CA
and certificates (`pki`), the htpasswd file (`htpasswd`)."""
