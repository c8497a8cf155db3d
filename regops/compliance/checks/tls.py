"""The served certificate and TLS as clients see them (`tls.*`)."""

from __future__ import annotations

from regops.compliance.checks._base import Context, check
from regops.compliance.model import Verdict, fail, ok
from regops.compliance.tls import check_mozilla_intermediate
from regops.registry import endpoint
from regops.secrets import pki


@check(
    id="tls.certificate",
    title="The served certificate is trusted and covers every name",
    rationale="Clients verify the chain and the name; a mismatch breaks every docker pull.",
    reference="regops",
    side="operator",
)
def tls_certificate_trusted(c: Context) -> Verdict:
    problem = c.probes.trust_problem()
    if problem:
        return fail(problem, "redeploy (the certificate is reissued when names change)")
    info = pki.cert_info(c.probes.served_certificate())
    missing = [n for n in c.s.tls_names if not _covers(c.probes.served_certificate(), n)]
    if missing:
        return fail(f"the served certificate does not cover {', '.join(missing)}", "redeploy")
    return ok(f"chains to the CA clients use, covers {len(c.s.tls_names)} name(s), "
              f"issuer {info['issuer_cn']}")


def _covers(pem: bytes, name: str) -> bool:
    from cryptography import x509

    return pki.covers(x509.load_pem_x509_certificate(pem), name)


@check(
    id="tls.cert-days-left",
    title="The served certificate has more days left than the threshold",
    rationale="Expiry breaks every client at once; the check warns while there is time to "
              "redeploy.",
    reference="regops (--cert-days, default 30)",
    side="operator",
)
def tls_cert_days_left(c: Context) -> Verdict:
    info = pki.cert_info(c.probes.served_certificate())
    days, threshold = info["days_left"], c.options.cert_days
    if days <= threshold:
        return fail(f"served certificate expires in {days} days ({info['not_after'][:10]}), "
                    f"threshold {threshold}", "redeploy (renews generated certificates) or "
                                              "replace the provided one")
    return ok(f"{days} days left (until {info['not_after'][:10]}), threshold {threshold}")


@check(
    id="tls.mozilla-intermediate",
    title="TLS meets Mozilla's intermediate profile (sslyze)",
    rationale="TLS 1.2/1.3, AEAD suites and X25519/P-256/P-384 only, as the front door offers them "
              "(the registry's own Go TLS cannot: it always offers P-521).",
    reference="Mozilla Server Side TLS 5.7, intermediate",
    side="operator",
)
def tls_mozilla_intermediate(c: Context) -> Verdict:
    return check_mozilla_intermediate(c.probes.target, endpoint.ca_file(c.s))
