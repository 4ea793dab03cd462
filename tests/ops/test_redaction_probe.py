"""The redactor's cheap first look (ASCII text, ASCII secrets) never lets a secret through: it
answers exactly what the full scans answer, for every run of a secret at every offset and case."""

from __future__ import annotations

import random

from quantum_exec.ops.logs import MIN_SECRET_RUN, REDACTED, Redactor

LONG = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
ODD = "quantum-sim-secret-x"  # not a multiple of the gram size
SHORT = "s3cr3t-pw"


def redactors() -> tuple[Redactor, Redactor]:
    quick, full = Redactor(), Redactor()
    for each in (quick, full):
        each.set_secrets((LONG, ODD, SHORT))
    full._probes = None  # the scans alone, as before the first look existed
    return quick, full


def test_every_run_of_a_secret_is_hidden_at_every_offset_and_case() -> None:
    quick, full = redactors()
    for secret in (LONG, ODD):
        for start in range(len(secret) - MIN_SECRET_RUN + 1):
            run = secret[start : start + MIN_SECRET_RUN]
            for cased in (run, run.upper(), run.lower()):
                text = f'{{"note":"x {cased} y","id":"1796612442818-1"}}'
                assert cased not in quick.text(text)
                assert quick.text(text) == full.text(text)
    text = f"pw={SHORT.upper()};"
    assert quick.text(text) == full.text(text) == f"pw={REDACTED};"


def test_text_without_a_secret_is_returned_unchanged_and_as_the_scans_say() -> None:
    quick, full = redactors()
    rng = random.Random(7)
    alphabet = LONG + ODD + SHORT + ' -_:{}"0123456789'
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        assert quick.text(text) == full.text(text)
    plain = '{"intent_id":"warm2-1796612442-49","symbol":"B48USDT","status":"filled"}'
    assert quick.text(plain) is plain


def test_non_ascii_text_takes_the_full_scans() -> None:
    quick, full = redactors()
    text = f"é {LONG[3 : 3 + MIN_SECRET_RUN].upper()} ü"
    assert quick.text(text) == full.text(text)
    assert REDACTED in quick.text(text)
