"""pyinfra facts pyinfra lacks: each a class with its docstring, `command()` and
`process()`, as pyinfra's own facts are.

- `DockerImagePresent` tells whether an image must be loaded or pulled,
  `S3BucketPresent` whether a storage host still needs its bucket;
  `NumericStat` compares files by content and numeric owner.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from regops import hostpaths


class DockerImagePresent(FactBase):
    """Whether the host's Docker has an image; False when Docker is not installed yet."""

    default = bool

    def requires_command(self, *args: Any, **kwargs: Any) -> str:
        return "docker"

    def command(self, image: str) -> str:
        return f"docker image inspect {image} >/dev/null 2>&1 && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return "yes" in output


class S3BucketPresent(FactBase):
    """Whether SeaweedFS (master at `master`) has the bucket; False while it is not up."""

    default = bool

    def command(self, bucket: str, master: str) -> str:
        return (f"printf 's3.bucket.list\\n' | {hostpaths.WEED_BINARY} shell -master={master} "
                f"2>/dev/null | grep -qw -- {bucket} && echo yes || echo no")

    def process(self, output: list[str]) -> bool:
        return "yes" in output


class NumericStat(FactBase):
    """`uid gid mode sha1` of a file, numeric so a gid without a name compares stably."""

    def command(self, path: str) -> str:
        return (
            f"if [ -f {path} ]; then stat -c '%u %g %a' {path} | tr '\\n' ' '; "
            f"sha1sum {path} | cut -d' ' -f1; fi"
        )

    def process(self, output: list[str]) -> dict[str, str] | None:
        fields = " ".join(output).split()
        if len(fields) != 4:
            return None
        return dict(zip(("uid", "gid", "mode", "sha1"), fields, strict=True))
