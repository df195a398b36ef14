"""VRRP failover with both Tandem nodes running as `user: nobody` (least privilege): after the
drop each keeps only CAP_NET_ADMIN + CAP_NET_RAW, and the backup still takes over the VIP (raw
socket adverts, rtnetlink address change, gratuitous ARPs) when the master is killed."""
import os
import pwd
import signal

import netns
from lb_config import VIP, lb_config
from test_vrrp import Lab

HA_CAPS = (1 << 12) | (1 << 13)  # CAP_NET_ADMIN | CAP_NET_RAW


class NobodyLab(Lab):
    def start(self, name, priority, **kw):
        # The config stays root-owned and private: it is read before the drop (no reload here).
        conf = self.tmp / f"{name}.yaml"
        conf.write_text("user: nobody\n" + lb_config(name, priority, **kw))
        p = self.topo.spawn(name, self.bin, "run", "-c", str(conf),
                            log=str(self.tmp / f"{name}.log"))
        self.lbs[name] = p
        netns.wait_until(lambda: self.admin(name, "/api/v1/status") is not None
                         or p.poll() is not None or None, 5, f"{name} admin")
        assert p.poll() is None, open(self.tmp / f"{name}.log").read()
        return p


def creds(pid):
    """(uids, CapEff) of every thread."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        f = dict(line.split(":", 1) for line in open(f"/proc/{pid}/task/{tid}/status"))
        out.append((f["Uid"].split(), int(f["CapEff"], 16), int(f["CapPrm"], 16)))
    return out


def test_failover_as_nobody(topo, tandem_bin, tmp_path):
    lab = NobodyLab(topo, tandem_bin, tmp_path)
    uid = str(pwd.getpwnam("nobody").pw_uid)
    lab.start("lb1", 150)
    lab.start("lb2", 100)
    assert lab.one_master() == "lb1"
    assert lab.holds_vip("lb1") and not lab.holds_vip("lb2")
    for name in ("lb1", "lb2"):
        for uids, eff, prm in creds(lab.lbs[name].pid):  # `ip netns exec` execs: same PID
            assert uids == [uid] * 4 and eff == HA_CAPS and prm == HA_CAPS, (name, uids, eff)
    assert lab.http("client", f"http://{VIP}:8080/") == 200
    lab.kill_master_and_take_over("lb1", "lb2", "kill -9 (nodes as nobody)")
    # A graceful stop as nobody removes the VIP (CAP_NET_ADMIN kept).
    lab.topo.stop(lab.lbs["lb2"], signal.SIGTERM)
    assert lab.lbs["lb2"].returncode == 0
    assert not lab.holds_vip("lb2")
