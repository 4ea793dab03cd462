"""etc/quantum/execution.env.example documents every setting, with its true default."""

from __future__ import annotations

import re
from pathlib import Path

from quantum_exec.core.settings import Settings, env_var_names, load_settings, read_env_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "etc" / "quantum" / "execution.env.example"
ASSIGNMENT = re.compile(r"^(#?)([A-Z][A-Z0-9_]*)=(.*)$")


def documented() -> dict[str, tuple[bool, str, str]]:
    """Variable -> (commented out, value, the comment line just above it)."""
    found: dict[str, tuple[bool, str, str]] = {}
    previous = ""
    for line in EXAMPLE.read_text().splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            found[match[2]] = (bool(match[1]), match[3], previous)
        elif line.startswith("#"):
            previous = line
    return found


def test_every_setting_is_documented() -> None:
    docs = documented()
    missing = [env_var_names(f)[0] for f in Settings.model_fields if env_var_names(f)[0] not in docs]
    assert missing == [], f"add these to {EXAMPLE.relative_to(ROOT)}: {missing}"
    known = {env_var_names(f)[0] for f in Settings.model_fields}
    assert sorted(set(docs) - known) == [], "documented variables that no setting reads"
    for var, (_, _, comment) in docs.items():
        assert len(comment.lstrip("# ")) > 10, f"{var} has no one-line meaning above it"


def test_commented_values_are_the_real_defaults() -> None:
    # Uncommenting every default line must change nothing.
    defaults = {var: value for var, (commented, value, _) in documented().items() if commented and value}
    built = load_settings(environ=defaults)
    reference = Settings()
    for field in Settings.model_fields:
        if env_var_names(field)[0] in defaults:
            assert getattr(built, field) == getattr(reference, field), field


def test_example_loads_as_a_valid_configuration() -> None:
    # The active lines plus credentials (which come from systemd) make a startable configuration.
    active = read_env_file(EXAMPLE)
    assert active == {"QUANTUM_REDIS_URL": "redis://127.0.0.1:6379/0", "QUANTUM_EXCHANGE": "testnet"}
    settings = load_settings(
        env_file=EXAMPLE, environ={"BINANCE_API_KEY": "k" * 16, "BINANCE_API_SECRET": "s" * 16}
    )
    assert settings.exchange.value == "testnet"
    assert settings.metrics_port == 9108
