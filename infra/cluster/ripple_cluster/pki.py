"""Certificates and keys of the cluster, made with ``cryptography`` under ``$RIPPLE_HOME/cluster/pki``.

One CA signs the apiserver's serving certificate and a client certificate per component (the
identity Kubernetes' RBAC knows it by); one RSA key pair signs and verifies service-account tokens.
Existing files are kept, so restarting the cluster does not invalidate kubeconfigs or tokens.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .settings import Settings

VALID = dt.timedelta(days=3650)

# name -> (common name, organisation): the identities RBAC's default bindings expect.
CLIENTS: dict[str, tuple[str, str | None]] = {
    "admin": ("ripple-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    "kube-proxy": ("system:kube-proxy", None),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
    # The KIngress reads Ingresses and Services and writes Ingress status: a dedicated RBAC role
    # would be tighter; masters keeps the bring-up short (see README, "What remains").
    "kingress": ("ripple-kingress", "system:masters"),
}


def _write_key(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, ca: bool
) -> x509.CertificateBuilder:
    """What the CA and every leaf certificate share: a random serial, valid from five minutes ago
    (clocks a little apart) for VALID, and whether it may sign others."""
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALID)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )


def _ca(d: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    crt, key = d / "ca.crt", d / "ca.key"
    if crt.exists() and key.exists():
        return x509.load_pem_x509_certificate(crt.read_bytes()), _load_key(key)
    k = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name("ripple-cluster-ca"), _name("ripple-cluster-ca"), k, ca=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(k, hashes.SHA256())
    )
    _write_key(key, k)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, k


def _leaf(
    d: Path,
    name: str,
    subject: x509.Name,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool = False,
    dns: list[str] | None = None,
    ips: list[str] | None = None,
) -> None:
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    if crt.exists() and key.exists():
        return
    k = ec.generate_private_key(ec.SECP256R1())
    b = _builder(subject, ca[0].subject, k, ca=False).add_extension(
        x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
        ),
        critical=False,
    )
    if server:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns or []]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    _write_key(key, k)
    crt.write_bytes(b.sign(ca[1], hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def ensure(s: Settings) -> Path:
    """Create whatever is missing; return the pki directory."""
    d = s.pki
    d.mkdir(parents=True, exist_ok=True)
    ca = _ca(d)
    _leaf(
        d,
        "apiserver",
        _name("kube-apiserver"),
        ca,
        server=True,
        dns=[
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            s.node_name,
        ],
        ips=["127.0.0.1", s.node_ip, s.kubernetes_service_ip],
    )
    for name, (cn, org) in CLIENTS.items():
        _leaf(d, name, _name(cn, org), ca)
    _leaf(d, "kubelet", _name(f"system:node:{s.node_name}", "system:nodes"), ca)
    _leaf(
        d,
        "kubelet-serving",
        _name(s.node_name),
        ca,
        server=True,
        dns=[s.node_name, "localhost"],
        ips=[s.node_ip, "127.0.0.1"],
    )
    sa = d / "sa.key"
    if not sa.exists():
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(sa, k)
        (d / "sa.pub").write_bytes(
            k.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return d


def kubeconfig(s: Settings, path: Path, client: str, server: str) -> None:
    """Write a kubeconfig for ``client`` (a pki name) talking to ``server``."""
    import yaml

    d = s.pki
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "ripple", "cluster": {"server": server, "certificate-authority": str(d / "ca.crt")}}
        ],
        "users": [
            {
                "name": client,
                "user": {
                    "client-certificate": str(d / f"{client}.crt"),
                    "client-key": str(d / f"{client}.key"),
                },
            }
        ],
        "contexts": [{"name": "ripple", "context": {"cluster": "ripple", "user": client}}],
        "current-context": "ripple",
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
