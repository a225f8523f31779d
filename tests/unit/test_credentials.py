"""Credential checks take any string a header or cookie can carry (generated), never raise,
and accept exactly the secret."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from memkube.dashboard.sessions import Sessions
from memkube.security import new_token, same_secret

TOKEN = new_token()
# what aiohttp can hand us: any text, including lone surrogates from undecodable bytes
presented = st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")),
                      st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)))


@given(presented)
def test_same_secret_accepts_exactly_the_secret(value: str) -> None:
    assert same_secret(value, TOKEN) is (value == TOKEN)
    assert same_secret(TOKEN, TOKEN)


@given(presented)
def test_no_string_is_a_session_it_was_not_given(value: str) -> None:
    sessions = Sessions()
    real = sessions.create()
    assert sessions.valid(value) is (value == real)
    sessions.revoke(value)  # revoking garbage is harmless
    assert sessions.valid(real) is (value != real)
