"""Connecting to Temporal: plain on the local default, TLS / mTLS / API key from the settings."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

from aiworld.config import ConfigError, Settings, load_settings
from aiworld.temporal import connect, connect_config


def _certificate(name: str, key, issuer_name: str, issuer_key, *, ca: bool, usage=None, dns: str | None = None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if dns is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_pki(directory: Path) -> dict[str, Path]:
    """A private CA, a server certificate for `localhost` and a client certificate, as PEM files."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    issued = {
        "ca": (ca_key, _certificate("aiworld test CA", ca_key, "aiworld test CA", ca_key, ca=True)),
    }
    for role, usage, dns in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH, "localhost"),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH, None),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        issued[role] = (
            key,
            _certificate(f"aiworld {role}", key, "aiworld test CA", ca_key, ca=False, usage=usage, dns=dns),
        )
    paths = {}
    for role, (key, certificate) in issued.items():
        paths[f"{role}_cert"] = directory / f"{role}.pem"
        paths[f"{role}_cert"].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        paths[f"{role}_key"] = directory / f"{role}.key"
        paths[f"{role}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return paths


@asynccontextmanager
async def mtls_front(target: str, pki: dict[str, Path], peers: list[str]) -> AsyncIterator[str]:
    """A TLS endpoint that demands a client certificate of our CA and forwards the decrypted gRPC
    stream to the plain dev server, like a cluster's TLS frontend. Records each client's name."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca_cert"]))
    context.load_cert_chain(pki["server_cert"], pki["server_key"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    host, _, port = target.rpartition(":")

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        subject = dict(part[0] for part in writer.get_extra_info("peercert")["subject"])
        peers.append(subject["commonName"])
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True)

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(forward, sock=listening, ssl=context)
    try:
        yield f"127.0.0.1:{listening.getsockname()[1]}"
    finally:
        server.close()


def test_the_local_default_is_plain():
    assert connect_config(Settings()) == {"target_host": "127.0.0.1:7233", "namespace": "default"}


def test_an_api_key_turns_tls_on():
    config = connect_config(
        Settings(
            temporal_address="ns.acct.tmprl.cloud:7233", temporal_namespace="ns.acct", temporal_api_key="cloud-key"
        )
    )
    assert config == {
        "target_host": "ns.acct.tmprl.cloud:7233",
        "namespace": "ns.acct",
        "api_key": "cloud-key",
        "tls": True,
    }
    # An operator behind a proxy that terminates TLS may still turn it off.
    assert connect_config(Settings(temporal_api_key="cloud-key", temporal_tls=False))["tls"] is False


def test_certificates_make_an_mtls_config(tmp_path):
    pki = write_pki(tmp_path)
    settings = Settings(
        temporal_tls_server_ca_cert=pki["ca_cert"],
        temporal_tls_client_cert=pki["client_cert"],
        temporal_tls_client_key=pki["client_key"],
        temporal_tls_server_name="localhost",
    )
    tls = connect_config(settings)["tls"]
    assert isinstance(tls, TLSConfig) and tls.domain == "localhost"
    assert tls.server_root_ca_cert == pki["ca_cert"].read_bytes()
    assert (
        tls.client_cert == pki["client_cert"].read_bytes() and tls.client_private_key == pki["client_key"].read_bytes()
    )


def test_a_client_certificate_needs_its_key_and_files_must_exist(tmp_path):
    pki = write_pki(tmp_path)
    with pytest.raises(ConfigError, match="temporal_tls_client_key: give both"):
        load_settings(temporal_tls_client_cert=pki["client_cert"])
    with pytest.raises(ConfigError, match="AIWORLD_TEMPORAL_TLS_SERVER_CA_CERT"):
        load_settings(temporal_tls_server_ca_cert=tmp_path / "missing.pem")


async def test_the_default_local_path_connects(dev_env):
    client = await connect(Settings(temporal_address=dev_env.client.service_client.config.target_host))
    assert await client.service_client.check_health()
    assert client.data_converter is pydantic_data_converter and client.namespace == "default"


async def test_connects_through_mtls_with_an_api_key(dev_env, tmp_path):
    pki = write_pki(tmp_path)
    peers: list[str] = []
    async with mtls_front(dev_env.client.service_client.config.target_host, pki, peers) as address:
        settings = Settings(
            temporal_address=address,
            temporal_api_key="cloud-key",
            temporal_tls_server_ca_cert=pki["ca_cert"],
            temporal_tls_client_cert=pki["client_cert"],
            temporal_tls_client_key=pki["client_key"],
            temporal_tls_server_name="localhost",
        )
        client = await connect(settings)
        assert await client.service_client.check_health()
        assert client.api_key == "cloud-key" and client.data_converter is pydantic_data_converter
    assert peers and set(peers) == {"aiworld client"}  # it really spoke TLS, with our client certificate
