"""Argument types and cloud addresses: each bad value is refused with what to write instead."""

from __future__ import annotations

import argparse
import re

import pytest

from edge.address import check_resolvable, split_address
from tandem.args import non_negative_int, port, positive_float, positive_int, probability, readable_file


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:50051", ("127.0.0.1", 50051)),
    ("gpu-host:1", ("gpu-host", 1)),
    ("[::1]:65535", ("::1", 65535)),
    ("localhost:8080", ("localhost", 8080)),
])
def test_host_port_forms_are_accepted(text, expected):
    assert split_address(text) == expected


@pytest.mark.parametrize("text, message", [
    ("127.0.0.1", "has no port"),
    ("gpu-host", "has no port"),
    ("http://127.0.0.1:50051", "no scheme (http:)"),
    ("https://gpu-host:443", "for TLS add --tls-ca"),
    ("grpc://h:1", "no scheme (grpc:)"),
    ("dns:///h:1", "no scheme (dns:)"),
    ("127.0.0.1:0", "the port must be 1-65535"),
    ("127.0.0.1:65536", "the port must be 1-65535"),
    ("127.0.0.1:-1", "the port must be 1-65535"),
    ("127.0.0.1:http", "the port must be 1-65535"),
    (":50051", "has no valid host"),
    ("my host:1", "has no valid host"),
    ("::1:50051", "IPv6 address in brackets"),
    ("[::1]50051", "is not [IPv6]:PORT"),
])
def test_malformed_addresses_say_what_to_write(text, message):
    with pytest.raises(ValueError, match=r"HOST:PORT|IPv6|port must be") as info:
        split_address(text)
    assert message in str(info.value) and repr(text) in str(info.value)


def test_an_unresolvable_host_is_named():
    assert check_resolvable("127.0.0.1:50051") is None
    problem = check_resolvable("no-such-host.invalid:50051")
    assert problem and "cannot resolve the host 'no-such-host.invalid'" in problem


@pytest.mark.parametrize("kind, good, bad", [
    (port, ["0", "1", "65535"], ["-1", "65536", "99999", "x", "1.5"]),
    (positive_int, ["1", "4096"], ["0", "-1", "x"]),
    (non_negative_int, ["0", "3"], ["-1", "x"]),
    (positive_float, ["0.5", "30"], ["0", "-2", "nan", "inf", "x"]),
    (probability, ["0.1", "1"], ["0", "1.01", "x"]),
])
def test_number_types_accept_their_range_and_refuse_the_rest(kind, good, bad):
    for text in good:
        kind(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(text)):
            kind(text)


def test_readable_file_names_what_is_wrong(tmp_path):
    with pytest.raises(argparse.ArgumentTypeError, match="no such file"):
        readable_file(str(tmp_path / "missing.txt"))
    with pytest.raises(argparse.ArgumentTypeError, match="is not a file"):
        readable_file(str(tmp_path))
    present = tmp_path / "token.txt"
    present.write_text("secret\n")
    assert readable_file(str(present)) == str(present)
