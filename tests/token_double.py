"""A Microsoft identity platform double over TLS on 127.0.0.1, for the real azure-identity library.

It answers what azure-identity's *async* credentials call (read in azure-identity 1.27's source):

- ``POST /{tenant}/oauth2/v2.0/token`` (client credentials grant), the Entra ID v2.0 token endpoint, with
  ``client_secret``, or ``client_assertion`` (a certificate-signed JWT: PS256, ``x5t#S256``, ``aud`` the
  token URL; or a federated token, the workload identity case). The async credentials go straight there:
  no instance discovery and no openid-configuration (those are MSAL's, which the sync credentials use), so
  any other path is recorded and answered 404, and the tests check that none was asked for.
- ``GET /msi/token`` the App Service managed identity endpoint that azure-identity uses when
  ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set (api-version 2019-08-01, ``X-IDENTITY-HEADER``).

Tokens are JWT-shaped (``aud``, ``tid``, ``appid``, ``exp``: what Graph reads) with a lifetime that a
test sets (``lifetime``), and every one issued is recorded, so a later end-to-end test can make the Graph
simulator accept exactly these. Refusals have Entra ID's shape (``error``, ``error_description`` with an
AADSTS code, ``error_codes``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import trustme
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified."""
    claims: dict[str, Any] = json.loads(unb64url(token.split(".")[1]))
    return claims


@dataclass
class App:
    """An app registration: what it may present."""

    secret: str | None = None
    certificate: x509.Certificate | None = None
    #: federated tokens the platform currently accepts for it (a Kubernetes service account token's issuer and
    #: subject would be checked against a federated identity credential; here the exact tokens are listed)
    federated: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Issued:
    token: str
    client_id: str
    audience: str
    expires_on: int
    grant: str  # client_secret, certificate, federated, managed_identity


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    form: dict[str, str]
    query: dict[str, str]


class TokenDouble:
    def __init__(self, ca: trustme.CA, *, lifetime: int = 3600) -> None:
        self.ca = ca
        self.lifetime = lifetime
        self.tenant = "7f8d3c2a-0b1e-4d5f-9a6b-1c2d3e4f5a6b"
        self.apps: dict[str, App] = {}
        self.identity_header = secrets.token_urlsafe(16)
        self.seen: list[Seen] = []
        self.issued: list[Issued] = []
        self.refusals: list[str] = []
        self._signing_key = secrets.token_bytes(32)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/msi/token", self._managed_identity)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(context)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def authority(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def msi_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}/msi/token"

    # ---- what tests look at --------------------------------------------------------------------

    def accepts(self, token: str) -> bool:
        """``token`` was issued here and has not expired (what a resource server would check)."""
        return any(i.token == token and i.expires_on > time.time() for i in self.issued)

    def issued_for(self, token: str) -> Issued:
        return next(i for i in self.issued if i.token == token)

    def paths(self) -> set[str]:
        return {s.path for s in self.seen}

    # ---- endpoints -----------------------------------------------------------------------------

    def _issue(self, client_id: str, audience: str, grant: str) -> Issued:
        now = int(time.time())
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{self.tenant}/",
            "tid": self.tenant,
            "appid": client_id,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime,
            "jti": secrets.token_hex(8),
        }
        body = b64url(json.dumps(claims).encode())
        signature = b64url(hmac.new(self._signing_key, f"{header}.{body}".encode(), hashlib.sha256).digest())
        issued = Issued(f"{header}.{body}.{signature}", client_id, audience, now + self.lifetime, grant)
        self.issued.append(issued)
        return issued

    def _refuse(self, status: int, error: str, code: int, description: str) -> web.Response:
        self.refusals.append(f"AADSTS{code}")
        return web.json_response(
            {
                "error": error,
                "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {secrets.token_hex(8)}",
                "error_codes": [code],
                "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                "error_uri": f"https://login.microsoftonline.com/error?code={code}",
            },
            status=status,
        )

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.seen.append(Seen(request.method, request.path, form, dict(request.query)))
        if request.match_info["tenant"] != self.tenant:
            return self._refuse(400, "invalid_request", 90002, "Tenant not found.")
        if form.get("grant_type") != "client_credentials":
            return self._refuse(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        app = self.apps.get(form.get("client_id", ""))
        if app is None:
            return self._refuse(400, "unauthorized_client", 700016, "Application not found in the directory.")
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return self._refuse(400, "invalid_scope", 1002012, "The provided value for scope is not valid.")
        if "client_secret" in form:
            if app.secret is None or not hmac.compare_digest(form["client_secret"], app.secret):
                return self._refuse(401, "invalid_client", 7000215, "Invalid client secret provided.")
            grant = "client_secret"
        elif form.get("client_assertion_type") == JWT_BEARER and "client_assertion" in form:
            assertion = form["client_assertion"]
            if assertion in app.federated:
                grant = "federated"
            elif app.certificate is not None and self._certificate_assertion_ok(app.certificate, assertion, form):
                grant = "certificate"
            else:
                return self._refuse(
                    401, "invalid_client", 700024, "Client assertion is not within its valid time range."
                )
        else:
            return self._refuse(
                401, "invalid_client", 7000218, "The request body must contain client_assertion or client_secret."
            )
        issued = self._issue(form["client_id"], scope.removesuffix("/.default"), grant)
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": self.lifetime,
                "ext_expires_in": self.lifetime,
                "access_token": issued.token,
            }
        )

    def _certificate_assertion_ok(self, certificate: x509.Certificate, assertion: str, form: dict[str, str]) -> bool:
        """A client assertion as Entra ID checks it: signed by the registered certificate's key, for this endpoint."""
        try:
            header_b64, payload_b64, signature_b64 = assertion.split(".")
            header = json.loads(unb64url(header_b64))
            claims = json.loads(unb64url(payload_b64))
            thumbprint = b64url(certificate.fingerprint(hashes.SHA256()))
            if header.get("alg") != "PS256" or header.get("x5t#S256", "").rstrip("=") != thumbprint:
                return False
            public_key = certificate.public_key()
            assert isinstance(public_key, rsa.RSAPublicKey)
            public_key.verify(
                unb64url(signature_b64),
                f"{header_b64}.{payload_b64}".encode(),
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=hashes.SHA256.digest_size),
                hashes.SHA256(),
            )
        except (ValueError, KeyError, InvalidSignature, json.JSONDecodeError):
            return False
        audience = f"https://{self.authority}/{self.tenant}/oauth2/v2.0/token"
        return bool(
            claims.get("aud") == audience
            and claims.get("iss") == claims.get("sub") == form["client_id"]
            and claims.get("exp", 0) > time.time()
        )

    async def _managed_identity(self, request: web.Request) -> web.Response:
        self.seen.append(Seen(request.method, request.path, {}, dict(request.query)))
        if request.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return web.json_response(
                {"statusCode": 400, "message": "X-IDENTITY-HEADER is missing or wrong"}, status=400
            )
        if request.query.get("api-version") != "2019-08-01" or "resource" not in request.query:
            return web.json_response({"statusCode": 400, "message": "api-version or resource missing"}, status=400)
        client_id = request.query.get("client_id", "system-assigned")
        issued = self._issue(client_id, request.query["resource"], "managed_identity")
        return web.json_response(
            {
                "access_token": issued.token,
                "expires_on": str(issued.expires_on),
                "resource": request.query["resource"],
                "token_type": "Bearer",
                "client_id": client_id,
            }
        )

    async def _unknown(self, request: web.Request) -> web.Response:
        self.seen.append(Seen(request.method, request.path, {}, dict(request.query)))
        return web.json_response({"error": "not_found"}, status=404)


def certificate_pem(ca: trustme.CA, password: bytes | None = None) -> tuple[bytes, x509.Certificate]:
    """An app's certificate with its RSA key, as one PEM (the key encrypted with ``password`` if given)."""
    leaf = ca.issue_cert("relay-app.example", key_type=trustme.KeyType.RSA)  # Entra ID wants RSA
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    cert_pem = leaf.cert_chain_pems[0].bytes()
    return key_pem + cert_pem, x509.load_pem_x509_certificate(cert_pem)
