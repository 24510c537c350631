"""Who is asking: the authenticated user (or system) behind a request."""

from __future__ import annotations

from dataclasses import dataclass

from radqc.serving.security.roles import Role


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: Role
    hospital_id: int | None
    hospital_code: str | None
    display_name: str | None
    #: "token" (a person's login) or "api_key" (a system).
    via: str
    client: str | None = None

    def can(self, permission: str) -> bool:
        return permission in self.role.permissions

    @property
    def identity(self) -> str:
        """The text stamped on watermarks and written to the access log."""
        where = f"@{self.hospital_code}" if self.hospital_code else ""
        return f"{self.display_name or self.username} ({self.username}{where})"
