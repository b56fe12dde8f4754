"""Indicator, country and technique validation: table cases plus property-based fuzzing."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incidents.choices import IndicatorType
from incidents.validation import normalize_countries, normalize_indicator, normalize_techniques

VALID = [
    ("domain", "Example.ORG.", "example.org"),
    ("domain", "bücher.example", "xn--bcher-kva.example"),
    ("ip", "192.0.2.1", "192.0.2.1"),
    ("ip", "::FFFF:192.0.2.1", "::ffff:192.0.2.1"),
    ("url", "https://Example.org/a?b=c", "https://example.org/a?b=c"),
    ("email", "Abuse@Example.ORG", "Abuse@example.org"),
    ("wallet", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
    ("wallet", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
    ("file_hash", "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    ("prompt_pattern_hash", " " + "F" * 64 + " ", "f" * 64),
]
INVALID = [
    ("domain", "localhost"), ("domain", "-bad-.example"), ("domain", "a..b"), ("domain", "1.2.3.4"),
    ("domain", "x" * 64 + ".example"), ("ip", "1.2.3"), ("ip", "192.0.2.1/24"), ("url", "example.org/path"),
    ("url", "file:///etc/passwd"), ("email", "a@b"), ("email", "@example.org"), ("wallet", "hello"),
    ("file_hash", "g" * 32), ("file_hash", "a" * 33), ("prompt_pattern_hash", "a" * 40), ("domain", " "),
    ("nonsense", "x"), ("url", "https://" + "a" * 2050 + ".com"),
]


@pytest.mark.parametrize(("kind", "value", "expected"), VALID)
def test_valid_indicators_are_normalised(kind, value, expected):
    assert normalize_indicator(kind, value) == expected


@pytest.mark.parametrize(("kind", "value"), INVALID)
def test_invalid_indicators_are_rejected_with_a_message(kind, value):
    with pytest.raises(ValueError) as excinfo:
        normalize_indicator(kind, value)
    assert str(excinfo.value)


@given(kind=st.sampled_from(IndicatorType.values), value=st.text(max_size=300))
def test_normalisation_either_raises_valueerror_or_is_idempotent(kind, value):
    try:
        normalised = normalize_indicator(kind, value)
    except ValueError:
        return
    assert normalize_indicator(kind, normalised) == normalised
    assert len(normalised) <= 2048


def test_countries_are_uppercased_and_deduplicated():
    assert normalize_countries(["us", "US", "gb"]) == ["US", "GB"]
    with pytest.raises(ValueError, match="ZZ"):
        normalize_countries(["ZZ"])


def test_techniques_accept_atlas_and_attack_ids():
    assert normalize_techniques(["AML.T0054", "AML.T0051.000", "T1059", "T1059.001", "T1059"]) == [
        "AML.T0054", "AML.T0051.000", "T1059", "T1059.001",
    ]
    for bad in ["aml.t0054", "T12", "AML.T0054.1", "TA0001"]:
        with pytest.raises(ValueError):
            normalize_techniques([bad])
