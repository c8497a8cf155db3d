"""Production inventory: an example to edit (host names are what clients use).

Every `registry_*` key is in docs/reference/keys.md. Passwords come from
REGOPS_PASSWORD_<USER> or are generated into .regops/secrets/ (gitignored).
"""

registries = [
    (
        "registry.example.com",
        {
            "ssh_user": "deploy",
            "_sudo": True,
            "registry_extra_names": ["10.0.0.5"],
            "registry_users": ["admin", "ci", "deploy-bot"],
            "registry_gc_schedule": "17 3 * * 0",
        },
    ),
]
