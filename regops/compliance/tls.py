"""The Mozilla "intermediate" TLS profile, checked with sslyze against the front door.

Clients reach the registry through its front door (nginx), which offers exactly
what the profile allows. A registry still serving TLS itself (deployed by
regops before the front door) offers the P-521 curve, which Go cannot switch
off: the check names that cause and the remedy, a deploy.
"""

from __future__ import annotations

import socket
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from regops.compliance.model import Unavailable, Verdict, fail, ok
from regops.compliance.probes import Target

GO_CURVES = frozenset({"secp521r1"})  # what a registry serving TLS itself adds
REMEDY = ("redeploy: the front door offers only what the profile allows "
          "(registry_tls_ciphers; curves X25519, P-256, P-384)")


def classify(issues: dict[str, str], outside_profile: Iterable[str]) -> Verdict:
    """Verdict from the profile checker's issues and the offered curves the profile lacks."""
    if not issues:
        return ok("meets Mozilla intermediate (TLS 1.2/1.3, AEAD suites, allowed curves)")
    outside = set(outside_profile)
    parts = [f"{key}: {text}" for key, text in sorted(issues.items())]
    if outside & GO_CURVES:
        parts.append("(P-521: the registry's own Go TLS answers, not the front door)")
    return fail("; ".join(parts), REMEDY)


def _scan(target: Target, ca_file: str | None, timeout: int) -> Any:
    from sslyze import (
        CertificateInfoExtraArgument,
        ScanCommandsExtraArguments,
        Scanner,
        ServerNetworkConfiguration,
        ServerNetworkLocation,
        ServerScanRequest,
    )
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    )

    try:
        found = socket.getaddrinfo(target.host, target.port, proto=socket.IPPROTO_TCP)
        address = str(found[0][4][0])
    except OSError as error:
        raise Unavailable(f"cannot resolve {target.host}: {error}") from None
    extra = ScanCommandsExtraArguments(
        certificate_info=CertificateInfoExtraArgument(custom_ca_file=Path(ca_file))
    ) if ca_file and Path(ca_file).is_file() else ScanCommandsExtraArguments()
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(target.server_name, target.port, ip_address=address),
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication=target.server_name, network_timeout=timeout,
            network_max_retries=1),
        scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        scan_commands_extra_arguments=extra,
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    return next(iter(scanner.get_results()))


def evaluate(result: Any, checker: Callable[..., None] | None = None) -> Verdict:
    """Verdict for one sslyze ServerScanResult."""
    from sslyze import ServerScanStatusEnum
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        MozillaTlsConfiguration,
        ServerNotCompliantWithTlsConfiguration,
        ServerScanResultIncomplete,
        TlsConfigurationEnum,
        check_server_against_tls_configuration,
    )

    if result.scan_status != ServerScanStatusEnum.COMPLETED:
        trace = getattr(result, "connectivity_error_trace", None)
        raise Unavailable(f"sslyze could not connect: {_last_line(trace)}")
    profile = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    try:
        (checker or check_server_against_tls_configuration)(result, profile)
        issues: dict[str, str] = {}
    except ServerNotCompliantWithTlsConfiguration as error:
        issues = dict(error.issues)
    except ServerScanResultIncomplete as error:
        raise Unavailable(f"sslyze scan incomplete: {error}") from None
    curves_result = result.scan_result.elliptic_curves.result
    offered = {c.name for c in (curves_result.supported_curves or [])} if curves_result else set()
    return classify(issues, offered - set(profile.tls_curves))


def check_mozilla_intermediate(target: Target, ca_file: str | None, timeout: int = 10) -> Verdict:
    try:
        import sslyze  # noqa: F401
    except ImportError:
        raise Unavailable("sslyze is not installed (pip install 'sslyze>=6.3,<7')") from None
    with warnings.catch_warnings():
        # sslyze's bundled trust stores hold old certificates that cryptography warns about.
        warnings.simplefilter("ignore")
        return evaluate(_scan(target, ca_file, timeout))


def _last_line(trace: Any) -> str:
    if trace is None:
        return "no detail"
    text = "".join(trace.format()) if hasattr(trace, "format") else str(trace)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no detail"
