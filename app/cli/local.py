"""``flask --app wsgi demo init`` and ``tls self-signed``: what ``make run`` needs on a fresh machine."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import click
from flask import current_app
from sqlalchemy import select

from app.cli.common import CLI_ACTOR, default_params
from app.extensions import db
from app.licensing import terms as licence_terms
from app.models import StaffUser
from app.staff import services as staff_service

demo_group = click.Group("demo", help="Demo data for a first look.")
tls_group = click.Group("tls", help="Certificates for local HTTPS.")


@demo_group.command("init")
def demo_init():
    """Create a demo admin and a demo client once; print their credentials once."""
    if db.session.scalar(select(StaffUser.id).limit(1)) is not None:
        click.echo("Demo data exists already (credentials were printed when it was made).")
        return
    password = secrets.token_urlsafe(12)
    staff_service.create_staff(db.session, email="admin@example.com", role="admin", password=password,
                               actor=CLI_ACTOR)
    client, key = licence_terms.create_client_with_term(db.session, name="Demo Client", actor=CLI_ACTOR,
                                                          params=default_params(), seat_limit=100)
    base = current_app.config["PUBLIC_URL"]
    click.echo("\n".join([
        "", "=" * 64, "Demo data created. These are shown once; keep them.",
        f"  Staff admin:  {base}/login",
        "    e-mail:     admin@example.com",
        f"    password:   {password}",
        f"  Demo client:  {client.slug}",
        f"    beacon key: {key}",
        "=" * 64, "",
    ]))


@tls_group.command("self-signed")
@click.option("--cert", "cert_path", required=True, type=click.Path(dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False))
@click.option("--host", "hosts", multiple=True, default=("localhost", "127.0.0.1", "::1"), show_default=True)
def tls_self_signed(cert_path, key_path, hosts):
    """Make a self-signed ECDSA certificate for local HTTPS, unless one exists."""
    if Path(cert_path).exists() and Path(key_path).exists():
        click.echo(f"Using the certificate in {cert_path}.")
        return
    write_self_signed(Path(cert_path), Path(key_path), hosts)
    click.echo(f"Made a self-signed certificate in {cert_path} (browsers will warn: it is for local use).")


def write_self_signed(cert_path: Path, key_path: Path, hosts) -> None:
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SCORM usage tracker (local)")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
