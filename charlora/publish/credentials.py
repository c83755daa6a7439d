"""Publishing credentials: from the environment or ``.env``, and never shown.

The environment wins over ``.env`` (so CI secrets override a local file). Values are kept out of
``repr`` and every message that could carry one goes through :meth:`Credentials.redact`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dotenv import dotenv_values

from charlora.errors import PipelineError

if TYPE_CHECKING:
    from charlora.params import PublishParams

ENV_FILE = Path(".env")

# What each variable is and where to get it (shown when one is missing).
WHERE_TO_GET = {
    "HF_TOKEN": "a Hugging Face access token with write access: https://huggingface.co/settings/tokens",
    "HF_REPO_ID": "the model repo to publish to, as user/name (created if missing), e.g. yourname/bramble-lora",
    "RUNWARE_API_KEY": "a Runware API key: https://my.runware.ai/keys (or set publish.runware.enabled: false)",
}
SECRET_NAMES = ("HF_TOKEN", "RUNWARE_API_KEY")
# Non-secret settings read the same way: where the services are (tests point them at local stand-ins).
ENDPOINT_NAMES = ("HF_ENDPOINT", "RUNWARE_URL")


@dataclass(frozen=True)
class Credentials:
    """Publishing settings from the environment and ``.env``; secret values never appear in ``repr``."""

    values: dict[str, str] = field(repr=False)

    def get(self, name: str) -> str | None:
        """The value of ``name``, or None when it is unset or empty."""
        return self.values.get(name) or None

    def redact(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        for name in SECRET_NAMES:
            secret = self.get(name)
            if secret:
                text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={'set' if self.get(name) else 'missing'}" for name in WHERE_TO_GET)
        return f"Credentials({shown})"


def load_credentials(env_file: Path = ENV_FILE) -> Credentials:
    """Read the publishing variables from ``env_file`` (if present), then the environment."""
    names = (*WHERE_TO_GET, *ENDPOINT_NAMES)
    from_file = dotenv_values(env_file) if env_file.is_file() else {}
    values = {name: value for name in names if (value := os.environ.get(name) or from_file.get(name))}
    return Credentials(values)


def needed(publish: PublishParams) -> list[str]:
    """The variables `make publish` needs with these ``publish`` params: HF_TOKEN; HF_REPO_ID unless
    ``publish.hf.repo_id`` is set; RUNWARE_API_KEY unless ``publish.runware.enabled`` is false."""
    return (["HF_TOKEN"] + (["HF_REPO_ID"] if publish.hf.repo_id is None else [])
            + (["RUNWARE_API_KEY"] if publish.runware.enabled else []))


def missing_names(credentials: Credentials, names: list[str]) -> list[str]:
    """Those of ``names`` that are unset or empty."""
    return [name for name in names if not credentials.get(name)]


def require(credentials: Credentials, names: list[str]) -> None:
    """Raise :class:`PipelineError` naming every missing variable and where to get it."""
    missing = missing_names(credentials, names)
    if missing:
        lines = "\n".join(f"  {name}: {WHERE_TO_GET[name]}" for name in missing)
        raise PipelineError(
            f"missing {', '.join(missing)}; nothing was sent. Set {'it' if len(missing) == 1 else 'them'} in the "
            f"environment or in .env (see .env.example):\n{lines}"
        )
