"""Request strictness (RFC 9112 and known smuggling vectors): every malformed request gets the
expected generated error, the connection is closed, and nothing of it reaches the backend."""
import socket
import types

import pytest

from harness import (Client, Response, backend_cfg, build_request, check_alive, free_port, get,
                     http_listener, make_config, read_raw_until_close, server)

H = b"Host: tandem.test\r\n"
E400 = {400}
ETE = {400, 501}      # transfer codings: 400 (chunked not final) or 501 (coding not implemented)
E431 = {431}
EVER = {505}


def _req(head_lines, body=b"", start=b"GET /strict HTTP/1.1"):
    return start + b"\r\n" + b"".join(l + b"\r\n" for l in head_lines) + b"\r\n" + body


def _post(extra, body=b""):
    return _req([H.rstrip(b"\r\n")] + extra, body, start=b"POST /echo HTTP/1.1")


HOST = H.rstrip(b"\r\n")

# (id, raw request, allowed statuses). The whole head arrives in one write.
HEAD_CASES = [
    # message framing
    ("cl_and_te", _post([b"Content-Length: 5", b"Transfer-Encoding: chunked"], b"0\r\n\r\n"), E400),
    ("cl_differing", _post([b"Content-Length: 5", b"Content-Length: 6"], b"hello!"), E400),
    ("cl_list_differing", _post([b"Content-Length: 5, 6"], b"hello!"), E400),
    ("cl_non_digit", _post([b"Content-Length: 5a"], b"hello"), E400),
    ("cl_negative", _post([b"Content-Length: -5"], b"hello"), E400),
    ("cl_plus_sign", _post([b"Content-Length: +5"], b"hello"), E400),
    ("cl_hex", _post([b"Content-Length: 0x5"], b"hello"), E400),
    ("cl_overflow", _post([b"Content-Length: 18446744073709551621"], b"hello"), E400),
    ("cl_empty", _post([b"Content-Length: "], b"hello"), E400),
    ("cl_inner_space", _post([b"Content-Length: 1 2"], b"hello"), E400),
    ("te_chunked_not_last", _post([b"Transfer-Encoding: chunked, gzip"], b"0\r\n\r\n"), ETE),
    ("te_gzip_only", _post([b"Transfer-Encoding: gzip"], b"0\r\n\r\n"), ETE),
    ("te_identity", _post([b"Transfer-Encoding: identity"], b"0\r\n\r\n"), ETE),
    ("te_chunked_twice", _post([b"Transfer-Encoding: chunked, chunked"], b"0\r\n\r\n"), ETE),
    ("te_two_fields", _post([b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip"],
                            b"0\r\n\r\n"), ETE),
    ("te_unknown_token", _post([b"Transfer-Encoding: xchunked"], b"0\r\n\r\n"), ETE),
    ("te_space_before_colon", _post([b"Transfer-Encoding : chunked"], b"0\r\n\r\n"), E400),
    ("te_obs_fold", _post([b"Transfer-Encoding:", b" chunked"], b"0\r\n\r\n"), E400),
    # field syntax
    ("obs_fold_space", _req([HOST, b"X-A: a", b" folded"]), E400),
    ("obs_fold_tab", _req([HOST, b"X-A: a", b"\tfolded"]), E400),
    ("ws_before_first_header", _req([b" X-A: a", HOST]), E400),
    ("space_before_colon", _req([HOST, b"X-A : b"]), E400),
    ("tab_before_colon", _req([HOST, b"X-A\t: b"]), E400),
    ("ctl_in_value", _req([HOST, b"X-A: a\x01b"]), E400),
    ("nul_in_value", _req([HOST, b"X-A: a\x00b"]), E400),
    ("del_in_value", _req([HOST, b"X-A: a\x7fb"]), E400),
    ("bare_cr_in_value", _req([HOST, b"X-A: a\rb"]), E400),
    ("bare_cr_before_crlf", _req([HOST, b"X-A: a\r"]), E400),
    ("bare_lf_line_end", _req([HOST, b"X-A: a\nX-B: b"]), E400),
    ("bare_lf_request_line", b"GET /strict HTTP/1.1\n" + H + b"\r\n", E400),
    ("empty_header_name", _req([HOST, b": b"]), E400),
    ("header_without_colon", _req([HOST, b"X-No-Colon"]), E400),
    ("paren_in_name", _req([HOST, b"X(A): b"]), E400),
    ("space_in_name", _req([HOST, b"X A: b"]), E400),
    ("non_ascii_in_name", _req([HOST, b"X-\xe9: b"]), E400),
    ("missing_host", _req([b"X-A: b"]), E400),
    ("double_host", _req([HOST, b"Host: other.test"]), E400),
    # request line
    ("double_space", _req([HOST], start=b"GET  /strict HTTP/1.1"), E400),
    ("extra_token", _req([HOST], start=b"GET /strict HTTP/1.1 x"), E400),
    ("no_version", _req([HOST], start=b"GET /strict"), E400),
    ("lowercase_version", _req([HOST], start=b"GET /strict http/1.1"), E400),
    ("tab_separator", _req([HOST], start=b"GET\t/strict HTTP/1.1"), E400),
    ("leading_space", _req([HOST], start=b" GET /strict HTTP/1.1"), E400),
    ("bad_method_char", _req([HOST], start=b"G(T /strict HTTP/1.1"), E400),
    ("ctl_in_target", _req([HOST], start=b"GET /a\x01b HTTP/1.1"), E400),
    ("del_in_target", _req([HOST], start=b"GET /a\x7fb HTTP/1.1"), E400),
    ("version_garbage", _req([HOST], start=b"GET /strict HTTP/1.x"), E400),
    ("version_2_0", _req([HOST], start=b"GET /strict HTTP/2.0"), EVER),
    ("version_0_9", _req([HOST], start=b"GET /strict HTTP/0.9"), EVER),
    # sizes (max_header_bytes 16KiB)
    ("head_too_large", _req([HOST, b"X-Big: " + b"v" * (20 * 1024)]), E431),
    ("too_many_headers", _req([HOST] + [b"X-H%d: v" % i for i in range(200)]), E431),
    ("request_line_too_long", _req([HOST], start=b"GET /" + b"u" * (20 * 1024) + b" HTTP/1.1"),
     {431, 414}),
    # more published variants: Transfer-Encoding in HTTP/1.0 (RFC 9112 6.1: faulty framing),
    # obfuscated codings (vertical tab, quoted, empty list element), a Host list
    ("te_http10", _req([HOST, b"Transfer-Encoding: chunked"], b"0\r\n\r\n",
                       start=b"POST /echo HTTP/1.0"), ETE),
    ("te_vertical_tab", _post([b"Transfer-Encoding:\x0bchunked"], b"0\r\n\r\n"), E400),
    ("te_form_feed", _post([b"Transfer-Encoding: \x0cchunked"], b"0\r\n\r\n"), E400),
    ("te_quoted", _post([b'Transfer-Encoding: "chunked"'], b"0\r\n\r\n"), ETE),
    ("te_leading_comma", _post([b"Transfer-Encoding: ,chunked"], b"0\r\n\r\n"), ETE),
    ("host_list", _req([b"Host: a.test, b.test"]), E400),
]


# Malformed chunked bodies after a valid head: the head may already have been forwarded (the
# proxy streams), but no byte of the bad framing and no complete request may reach the backend.
# (id, body, data that may legitimately have been forwarded before the error)
CHUNK = [("chunk_size_not_hex", b"zz\r\nhello\r\n0\r\n\r\n", False),
         ("chunk_size_overflow", b"1" + b"0" * 20 + b"\r\nhello\r\n0\r\n\r\n", False),
         ("chunk_size_0x", b"0x5\r\nhello\r\n0\r\n\r\n", False),
         ("chunk_size_negative", b"-5\r\nhello\r\n0\r\n\r\n", False),
         ("chunk_size_leading_space", b" 5\r\nhello\r\n0\r\n\r\n", False),
         ("chunk_size_empty", b"\r\nhello\r\n0\r\n\r\n", False),
         ("chunk_size_bare_lf", b"5\nhello\r\n0\r\n\r\n", False),
         ("chunk_ext_huge", b"5;" + b"x" * 100000 + b"\r\nhello\r\n0\r\n\r\n", False),
         ("chunk_data_too_long", b"5\r\nhelloXX\r\n0\r\n\r\n", True),
         ("chunk_data_bare_lf", b"5\r\nhello\n0\r\n\r\n", True),
         ("trailer_bad_name", b"5\r\nhello\r\n0\r\nX Bad: t\r\n\r\n", True),
         ("trailer_obs_fold", b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n", True),
         # framing and routing fields in trailers (RFC 9110 §6.5.1), which a backend that merges
         # trailers into the header section would act on
         ("trailer_content_length", b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n", True),
         ("trailer_transfer_encoding", b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
          True),
         ("trailer_host", b"5\r\nhello\r\n0\r\nHost: internal.test\r\n\r\n", True),
         # "Funky chunks" (Kallus, 2025): line terminators inside chunk extensions, which
         # lenient parsers end at different places (TERM.EXT / EXT.TERM)
         ("chunk_ext_bare_lf", b"5;a\nxx\r\nhello\r\n0\r\n\r\n", False),
         ("chunk_ext_bare_cr", b"5;a\rxx\r\nhello\r\n0\r\n\r\n", False),
         ("chunk_ext_open_quote", b'5;a="x\r\nhello\r\n0\r\n\r\n', False),
         ("chunk_ext_nul", b"5;\x00\r\nhello\r\n0\r\n\r\n", False),
         ("chunk_size_trailing_space", b"5 \r\nhello\r\n0\r\n\r\n", False),
         ("last_chunk_bare_lf", b"5\r\nhello\r\n0\r\n\n", True)]
BODY_CASES = [(cid, _post([b"Transfer-Encoding: chunked"], body), E400, data_first)
              for cid, body, data_first in CHUNK]


@pytest.fixture(scope="module")
def strict(module_pool):
    a = module_pool.http("a")
    port = free_port()
    t = module_pool.tandem(make_config(
        [http_listener("web", port, "app", max_header_bytes="16KiB", header_timeout="3s")],
        [backend_cfg("app", [server("a", a.port)], limits={"timeout": "5s"})]))
    return types.SimpleNamespace(t=t, a=a, port=port)


@pytest.fixture
def st(strict):
    strict.t.ensure_running()
    strict.a.reset()
    yield strict
    check_alive(strict.t, http_port=strict.port)


def _exchange(port, raw):
    """Sends raw in one write; returns everything received until tandem closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    with s:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            return read_raw_until_close(s, timeout=4)
        except socket.timeout:
            raise AssertionError("tandem did not close the connection after the error")


def _status(got):
    assert got, "connection closed without any response"
    head = got.split(b"\r\n\r\n", 1)[0]
    assert got.count(b"HTTP/1.1 ") == 1, f"more than one response: {got[:400]!r}"
    return Response(head + b"\r\n\r\n")


def _canary(st, cid):
    """A valid request on a fresh connection; once it arrived, everything before it has too."""
    target = f"/canary-{cid}"
    r = get(st.port, target)
    assert r.status == 200 and r.body == f"a GET {target}\n".encode()
    return target


@pytest.mark.parametrize("cid,raw,allowed", HEAD_CASES, ids=[c[0] for c in HEAD_CASES])
def test_malformed_head_rejected_and_not_forwarded(st, cid, raw, allowed):
    resp = _status(_exchange(st.port, raw))
    assert resp.status in allowed, f"{cid}: got {resp.status}, expected one of {allowed}"
    assert resp.get("x-backend") is None
    target = _canary(st, cid)
    reqs = list(st.a.requests)
    assert [q.target for q in reqs] == [target], f"backend received {[q.raw_head for q in reqs]}"
    assert st.a.raw_total == len(reqs[0].raw_head), f"stray bytes at backend: {st.a.all_raw()!r}"


@pytest.mark.parametrize("cid,raw,allowed,data_first", BODY_CASES,
                         ids=[c[0] for c in BODY_CASES])
def test_malformed_chunked_body_rejected(st, cid, raw, allowed, data_first):
    resp = _status(_exchange(st.port, raw))
    assert resp.status in allowed, f"{cid}: got {resp.status}, expected one of {allowed}"
    target = _canary(st, cid)
    others = [q for q in st.a.requests if q.target != target]
    assert not any(q.complete for q in others), "a request with a bad chunked body completed"
    if not data_first:
        assert b"hello" not in st.a.all_raw(), "bytes after the bad chunk line reached the backend"
    for bad in (b"XX", b"X Bad", b" b\r\n", b"xxxxxxxx"):
        assert bad not in st.a.all_raw(), f"malformed bytes {bad!r} reached the backend"


# ------------------------------------------------------------------------------------------
# Smuggling: a second request hidden behind ambiguous framing must never reach the backend

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: tandem.test\r\n\r\n"
SMUGGLE_CASES = [
    ("cl_te", _post([b"Content-Length: 5", b"Transfer-Encoding: chunked"],
                    b"0\r\n\r\n" + SMUGGLED)),
    ("te_cl", _post([b"Transfer-Encoding: chunked", b"Content-Length: 60"],
                    b"0\r\n\r\n" + SMUGGLED)),
    ("cl_cl", _post([b"Content-Length: 0", b"Content-Length: %d" % len(SMUGGLED)], SMUGGLED)),
    ("te_te_obfuscated", _post([b"Transfer-Encoding: chunked", b"Transfer-Encoding: x"],
                               b"0\r\n\r\n" + SMUGGLED)),
    ("te_space_colon", _post([b"Transfer-Encoding : chunked", b"Content-Length: 5"],
                             b"0\r\n\r\n" + SMUGGLED)),
    ("te_fold", _post([b"Transfer-Encoding: identity", b" chunked"], b"0\r\n\r\n" + SMUGGLED)),
    ("pipelined_after_bad", _req([HOST, b"X-A: a", b" fold"]) + SMUGGLED),
    ("te_http10", _req([HOST, b"Transfer-Encoding: chunked"], b"0\r\n\r\n" + SMUGGLED,
                       start=b"POST /echo HTTP/1.0")),
    ("te_vtab_cl", _post([b"Transfer-Encoding:\x0bchunked", b"Content-Length: 5"],
                         b"0\r\n\r\n" + SMUGGLED)),
    ("chunk_ext_lf", _post([b"Transfer-Encoding: chunked"],
                           b"2d;a\n0\r\n\r\n" + SMUGGLED + b"\r\n0\r\n\r\n")),
    ("chunk_ext_cr", _post([b"Transfer-Encoding: chunked"],
                           b"2d;a\r0\r\n\r\n" + SMUGGLED + b"\r\n0\r\n\r\n")),
]


@pytest.mark.parametrize("cid,raw", SMUGGLE_CASES, ids=[c[0] for c in SMUGGLE_CASES])
def test_smuggled_request_never_reaches_backend(st, cid, raw):
    resp = _status(_exchange(st.port, raw))
    assert resp.status in {400, 501}, resp
    _canary(st, cid)
    assert b"/smuggled" not in st.a.all_raw()
    assert "/smuggled" not in st.a.targets()


def test_request_text_inside_body_stays_body(st):
    with Client(st.port) as c:
        r = c.request("POST", "/echo", body=SMUGGLED)
        assert r.status == 200 and r.body == SMUGGLED
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
               + b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == SMUGGLED
    assert st.a.targets() == ["/echo", "/echo"]


def test_framing_headers_named_in_connection_stay(st):
    """Hop-by-hop removal must not strip the framing: a client naming Content-Length or
    Transfer-Encoding in Connection would otherwise turn its body into a request upstream."""
    with Client(st.port) as c:
        r = c.request("POST", "/echo", [("Connection", "Content-Length")], body=SMUGGLED)
        assert r.status == 200 and r.body == SMUGGLED
        c.send(build_request("POST", "/echo", [("Connection", "Transfer-Encoding"),
                                               ("Transfer-Encoding", "chunked")])
               + b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == SMUGGLED
    assert st.a.targets() == ["/echo", "/echo"]


def test_valid_pipelined_request_after_chunked_body_is_forwarded(st):
    """Positive control for the battery: correct framing followed by a second request."""
    with Client(st.port) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
               + b"5\r\nhello\r\n0\r\n\r\n" + build_request("GET", "/second"))
        assert c.read_response().body == b"hello"
        assert c.read_response().body == b"a GET /second\n"
    assert st.a.targets() == ["/echo", "/second"]

