"""Fixtures for Tandem's integration tests. The binary comes from $TANDEM_BIN; tests that need it
are skipped (with the reason) when it is unset. Harness self-tests (test_harness.py) always run."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import (HttpBackend, Tandem, TcpEchoBackend, backend_cfg,  # noqa: E402
                     free_port, http_listener, make_config, server)


@pytest.fixture(scope="session")
def tandem_bin():
    path = os.environ.get("TANDEM_BIN")
    if not path:
        pytest.skip("TANDEM_BIN is not set: integration tests need the tandem binary "
                    "(ctest sets it; by hand: TANDEM_BIN=build/src/tandem "
                    "/usr/bin/python3 -m pytest tests/integration)")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"TANDEM_BIN={path} is not an executable file")
    return os.path.abspath(path)


class _Pool:
    """Starts things and stops all of them at teardown (in reverse order)."""

    def __init__(self, binary, tmp):
        self.binary = binary
        self.tmp = tmp
        self.items = []
        self.n = 0

    def tandem(self, config, name=None):
        self.n += 1
        t = Tandem(self.binary, self.tmp, config, name or f"tandem{self.n}")
        self.items.append(t)
        return t.start()

    def http(self, name, port=0):
        b = HttpBackend(name, port).start()
        self.items.append(b)
        return b

    def tcp(self, name, mode="echo"):
        b = TcpEchoBackend(name, mode).start()
        self.items.append(b)
        return b

    def close(self):
        """Stops everything; a tandem that was running must exit 0 on SIGTERM (DESIGN §3)."""
        problems = []
        for item in reversed(self.items):
            was_running = isinstance(item, Tandem) and item.alive()
            try:
                rc = item.stop()
            except Exception as e:  # keep stopping the rest
                problems.append(f"stopping {item!r} failed: {e!r}")
                continue
            if isinstance(item, Tandem) and item.proc is not None:
                if was_running and rc != 0:
                    problems.append(f"{item.name} exited with status {rc} on SIGTERM "
                                    f"(negative = killed by that signal); stderr tail:\n"
                                    f"{item.stderr_tail(20)}")
                elif not was_running and rc not in (0, None) and not item.expected_exit:
                    problems.append(f"{item.name} had died during the test with status {rc}; "
                                    f"stderr tail:\n{item.stderr_tail(20)}")
        self.items = []
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def pool(request, tmp_path):
    """Function-scoped: pool.tandem(config), pool.http(name), pool.tcp(name, mode)."""
    binary = request.getfixturevalue("tandem_bin")
    p = _Pool(binary, tmp_path)
    yield p
    p.close()


@pytest.fixture
def backend_pool(tmp_path):
    """Like `pool` but without needing the binary (harness self-tests)."""
    p = _Pool(None, tmp_path)
    yield p
    p.close()


@pytest.fixture(scope="module")
def module_pool(request, tmp_path_factory, tandem_bin):
    p = _Pool(tandem_bin, tmp_path_factory.mktemp(request.module.__name__.split(".")[-1]))
    yield p
    p.close()


@pytest.fixture
def simple_proxy(pool):
    """One HTTP backend `a` behind one HTTP listener; returns (tandem, backend)."""
    a = pool.http("a")
    port = free_port()
    t = pool.tandem(make_config([http_listener("web", port, "app")],
                                [backend_cfg("app", [server("a", a.port)])]))
    a.reset()
    return t, a


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when in ("setup", "call"):
        for t in Tandem.instances:
            if t.proc is None:
                continue
            state = "running" if t.alive() else f"exited {t.proc.returncode}"
            rep.sections.append((f"tandem {t.name} (pid {t.pid}, {state}) stderr tail",
                                 t.stderr_tail(40) or "(empty)"))
    if call.when == "teardown":
        # only keep instances still in use (module-scoped ones) for later reports
        Tandem.instances[:] = [t for t in Tandem.instances if t.alive()]
