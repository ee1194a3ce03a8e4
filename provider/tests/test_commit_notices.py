"""Commit notices: the host hears when Octavia's transaction around a create or update cast ends,
so it need not read the driver-agent get socket to find out (docs/host-protocol.md)."""
import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import orm  # noqa: E402

from octavia_loxilb_provider import driver as driver_mod  # noqa: E402
from test_driver import agent_db, member  # noqa: E402


@pytest.fixture
def session():
    engine = sqlalchemy.create_engine("sqlite://")
    with orm.Session(engine) as s:
        yield s
    engine.dispose()


def requests_of(fake_host, kind):
    return [r for r in fake_host.requests if r["type"] == kind]


def cast_ticket(fake_host):
    (cast,) = requests_of(fake_host, "cast")
    return cast["args"]["commit_ticket"]


def test_the_commit_of_the_transaction_around_a_cast_is_noticed(unix_conf, fake_host, fake_get,
                                                               session):
    agent_db(fake_get)
    # As Octavia's API does: the provider is called inside the transaction, which commits after.
    session.begin()
    session.execute(sqlalchemy.text("select 1"))
    driver_mod.LoxiLBProviderDriver().member_create(member())
    assert requests_of(fake_host, "notice") == [], "noticed before the commit"
    # A savepoint inside the transaction is not Octavia's commit.
    with session.begin_nested():
        session.execute(sqlalchemy.text("select 1"))
    assert requests_of(fake_host, "notice") == []
    session.commit()
    assert requests_of(fake_host, "notice") == [
        {"type": "notice", "method": "committed", "args": {"tickets": [cast_ticket(fake_host)]}}]
    # The ticket is spent: later commits in this thread notice nothing.
    with session.begin():
        session.execute(sqlalchemy.text("select 1"))
    assert len(requests_of(fake_host, "notice")) == 1


def test_a_rollback_is_noticed_too(unix_conf, fake_host, fake_get, session):
    agent_db(fake_get)
    session.begin()
    driver_mod.LoxiLBProviderDriver().member_create(member())
    session.rollback()
    assert requests_of(fake_host, "notice") == [
        {"type": "notice", "method": "rolled_back", "args": {"tickets": [cast_ticket(fake_host)]}}]


def test_deletes_carry_no_ticket_and_a_host_that_refuses_notices_fails_nothing(
        unix_conf, fake_host, fake_get, session):
    agent_db(fake_get)
    session.begin()
    driver_mod.LoxiLBProviderDriver().member_delete(member())
    session.commit()
    assert "commit_ticket" not in requests_of(fake_host, "cast")[0]["args"]
    assert requests_of(fake_host, "notice") == []
    # An older host answers a notice with a failure: Octavia's commit goes on regardless.
    fake_host.answer = lambda request: (
        {"failure": {"class": "DriverError", "message": "request type \"notice\" is neither"}}
        if request["type"] == "notice" else {"result": None})
    session.begin()
    driver_mod.LoxiLBProviderDriver().member_update(member(), member())
    session.commit()
    assert len(requests_of(fake_host, "notice")) == 1
