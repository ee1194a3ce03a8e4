"""The end of the run (pytest runs this file last: files are collected in name order): nothing PENDING
anywhere in Octavia's database, and LoxiLB empty."""
from octavialib import after_delete, wait_for


def test_end_state(env):
    assert env.pending() == [], f"objects left PENDING_*: {env.pending()}"
    left = env.query("SELECT id, project_id, provisioning_status FROM load_balancer "
                     "WHERE provisioning_status != 'DELETED'")
    assert left == (), f"load balancers left: {left}"
    after_delete(lambda: wait_for(lambda: env.loxilb.all() == [], 10,
                                  lambda: f"LoxiLB to be empty (has {env.loxilb.vips()})"))
