"""The settings group that turns API authentication on (shared by the apiserver and the
edge metaserver): authentication is on when at least one verification key file is named,
and then every request is authorized too; with none, the API is open (AlwaysAllow)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from edgebus.auth.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER, Verifier

#: Paths a request without credentials may ask for, as ``system:anonymous`` (RBAC still
#: decides: ``system:public-info-viewer`` grants them to ``system:unauthenticated``). Other
#: requests without credentials are 401, as with Kubernetes' anonymous authenticator
#: limited to these endpoints (``AuthenticationConfiguration.anonymous.conditions``).
ANONYMOUS_PATHS = ("/healthz", "/livez", "/readyz", "/version")


class AuthSettings(BaseModel):
    token_keys: list[str] = Field(
        default_factory=list,
        description="PEM files with the token verification keys (public or private, one or more keys each). Non-empty turns authentication and RBAC on.",
    )
    issuer: str = Field(DEFAULT_ISSUER, description="The iss claim tokens must carry (and that issued tokens carry).")
    audiences: list[str] = Field(default_factory=lambda: [DEFAULT_AUDIENCE], description="Accepted aud values (a token must name one).")
    anonymous_paths: list[str] = Field(default_factory=lambda: list(ANONYMOUS_PATHS), description="Paths requests without credentials may ask for (as system:anonymous).")

    @property
    def enabled(self) -> bool:
        return bool(self.token_keys)

    def verifier(self) -> Verifier | None:
        if not self.token_keys:
            return None
        return Verifier(tuple(self.token_keys), issuers=(self.issuer,), audiences=tuple(self.audiences))
