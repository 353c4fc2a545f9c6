"""Failed password checks, counted before argon2 runs: per account (the e-mail, normalised) and per client address.
The login (auth.py) and accepting an invitation with the invited account's password (invitations.py) share the
counts, so an invitation is no way around the login's limit.

Lockout: an attacker who sends wrong passwords for someone's e-mail fills that account's window and would lock
its owner out for the window's length. So an address from which the account logged in successfully within
KNOWN_ADDRESS_SECONDS keeps its way in past a full account window (only its address limit applies): the owner at
the office or at home is not locked out, a guesser elsewhere is. What this costs: a guesser who shares an address
with the owner (the same NAT) gets the address limit instead of the account limit."""

from __future__ import annotations

from dataclasses import dataclass

from invitelink.rate_limits import RateLimits
from invitelink.services.errors import RateLimited

KNOWN_ADDRESS = "login-known-address"
KNOWN_ADDRESS_SECONDS = 30 * 86_400


@dataclass(frozen=True)
class Attempt:
    """A login counted as failed in advance, under the address and (unless let past a full window) the account."""

    limits: RateLimits
    account: str
    address: str
    account_counted: bool

    async def give_back(self) -> None:
        """It did not fail after all (it succeeded, or never got to the password check)."""
        await self.limits.give_back(self.limits.rules.login_address, self.address)
        if self.account_counted:
            await self.limits.give_back(self.limits.rules.login_account, self.account)


def pair(account: str, address: str) -> str:
    return f"{account}\n{address}"


async def admit(limits: RateLimits, account: str, address: str) -> Attempt:
    """Count the attempt, or refuse it (RateLimited, 429) before any argon2 work. The address first: an attempt
    refused for its account still counts against its address, so hammering a locked account costs its sender."""
    await limits.hit(limits.rules.login_address, address)
    try:
        await limits.hit(limits.rules.login_account, account)
    except RateLimited:
        if await limits.remembered(KNOWN_ADDRESS, pair(account, address)):
            return Attempt(limits, account, address, account_counted=False)
        raise
    return Attempt(limits, account, address, account_counted=True)
