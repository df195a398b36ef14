"""The Tandem load-balancer config of the e2e VRRP topology (tests/e2e/netns.py): lb NAME on
interface eth-NAME, VRID 51, the VIP, a backend at 198.18.0.21. Shared by the e2e tests and
bench/failover.py."""
import textwrap

VIP = "198.18.0.100"


def lb_config(name, priority, interval="100ms", preempt=True, listen="0.0.0.0:8080",
              backend_port=8000, track=False, track_listeners=False):
    health = ("\n            health: {active: {type: tcp, interval: 100ms, timeout: 100ms, rise: 1, fall: 1}}"
              if track else "")
    tracking = ("\n            track: {no_healthy_backends: -60, backends: [app]}" if track else
                "\n            track: {listener_down: -60}" if track_listeners else "")
    # Connections held open by a test (fd exhaustion) must outlive the test's own steps.
    limits = ", limits: {header_timeout: 60s}" if track_listeners else ""
    return textwrap.dedent(f"""
        node: {{id: {name}}}
        workers: 1
        drain_timeout: 1s
        admin: {{listen: 127.0.0.1:9900}}
        listeners: [{{name: web, listen: "{listen}", backend: app{limits}}}]
        backends:
          - name: app
            servers: [{{name: be, address: "198.18.0.21:{backend_port}"}}]{health}
        cluster:
          mode: active_passive
          vrrp:
            interface: eth-{name}
            vrid: 51
            priority: {priority}
            advert_interval: {interval}
            preempt: {"true" if preempt else "false"}
            virtual_ips: [{VIP}/24]{tracking}
    """)
