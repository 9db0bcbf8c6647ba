from pytake_gateway.domain.signature import sign, signature_valid


def test_signature_of_raw_bytes_is_accepted() -> None:
    body = b'{"object": "whatsapp_business_account"}'
    assert signature_valid(body, sign(body, "s3cret"), ["s3cret"])


def test_any_current_secret_is_accepted_for_rotation() -> None:
    body = b"{}"
    assert signature_valid(body, sign(body, "new"), ["old", "new"])


def test_wrong_secret_tampered_body_or_missing_header_is_refused() -> None:
    body = b'{"a":1}'
    assert not signature_valid(body, sign(body, "other"), ["s3cret"])
    assert not signature_valid(b'{"a": 1}', sign(body, "s3cret"), ["s3cret"])
    assert not signature_valid(body, None, ["s3cret"])
    assert not signature_valid(body, sign(body, "s3cret").removeprefix("sha256="), ["s3cret"])
    assert not signature_valid(body, sign(body, "s3cret"), [])
